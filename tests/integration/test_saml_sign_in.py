"""A SAML client: the browser flow refuses a pending account, and an active one's assertion
carries the umpass-saml attributes (issue 19, points 1 and 2)."""

from __future__ import annotations

import base64
import html
import re
import secrets
import zlib
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from provider.services import Services
from tests.conftest import KeycloakUnderTest, RealmUnderTest
from tests.support.grants import PASSWORD, active_student, add_client
from tests.support.keycloak_login import post_login_form
from tests.support.realm_changes import RealmChanges
from tests.support.students import enrol_student

_SAML_RESPONSE = re.compile(r'name="SAMLResponse" value="([^"]+)"')


@pytest.fixture
def saml_client(realm_changes: RealmChanges) -> dict[str, Any]:
    acs = "https://sp.example.invalid/saml/acs"
    return add_client(
        realm_changes,
        clientId=f"https://sp.example.invalid/{secrets.token_hex(3)}",
        protocol="saml",
        standardFlowEnabled=True,
        redirectUris=[acs],
        attributes={
            "saml.client.signature": "false",  # the test sends an unsigned AuthnRequest
            "saml.force.post.binding": "true",
            "saml_assertion_consumer_url_post": acs,
        },
    )


def _start(server: KeycloakUnderTest, realm: RealmUnderTest, client: dict[str, Any]) -> Any:
    """An AuthnRequest by the HTTP-Redirect binding; returns the session and the login page."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    request = (
        '<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
        'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" '
        f'ID="_{secrets.token_hex(8)}" Version="2.0" IssueInstant="{now}" '
        f'AssertionConsumerServiceURL="{client["redirectUris"][0]}">'
        f"<saml:Issuer>{client['clientId']}</saml:Issuer></samlp:AuthnRequest>"
    )
    deflated = zlib.compress(request.encode())[2:-4]  # raw DEFLATE
    session = requests.Session()
    url = f"{server.url}/realms/{realm.name}/protocol/saml"
    params = {"SAMLRequest": base64.b64encode(deflated).decode()}
    answer = session.get(url, params=params, allow_redirects=False, timeout=30)
    while answer.is_redirect:
        for cookie in session.cookies:
            cookie.secure = False
        answer = session.get(
            requests.compat.urljoin(answer.url, answer.headers["Location"]),
            allow_redirects=False,
            timeout=30,
        )
    for cookie in session.cookies:
        cookie.secure = False
    assert answer.status_code == 200 and "kc-form-login" in answer.text, answer.text[:300]
    return session, answer


def test_a_saml_client_refuses_a_pending_account_and_tells_an_active_ones_state(
    keycloak_server: KeycloakUnderTest,
    realm: RealmUnderTest,
    services: Services,
    saml_client: dict[str, Any],
) -> None:
    who = enrol_student(services, "m")
    user = services.keycloak.find_user(who.user_id)
    assert user is not None
    services.keycloak.set_password(user.id, PASSWORD)  # behind the service's back
    session, page = _start(keycloak_server, realm, saml_client)
    refused = post_login_form(session, page.text, {"username": who.user_id})
    assert refused.is_redirect and "/broker/umpass-activation/login" in refused.headers["Location"]
    assert "SAMLResponse" not in refused.text
    # The control: an active student gets an assertion, which says so.
    student = active_student(services, "m")
    session, page = _start(keycloak_server, realm, saml_client)
    answer = post_login_form(session, page.text, {"username": student.username})
    answer = post_login_form(session, answer.text, {"password": PASSWORD, "credentialId": ""})
    while answer.is_redirect:
        answer = session.get(
            requests.compat.urljoin(answer.url, answer.headers["Location"]),
            allow_redirects=False,
            timeout=30,
        )
    found = _SAML_RESPONSE.search(answer.text)
    assert found, answer.text[:500]
    assertion = base64.b64decode(html.unescape(found.group(1))).decode()
    assert re.search(
        r'<saml:Attribute [^>]*Name="activation_state"[^>]*>\s*'
        r"<saml:AttributeValue[^>]*>active</saml:AttributeValue>",
        assertion,
    ), assertion[:2000]
    assert 'Name="activated_at"' in assertion
