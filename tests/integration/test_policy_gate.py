"""The policy gate's ticket over real HTTP: the real Keycloak (keycloak_addon's
`umpass-policy-gate` in the realm's browser flow) and the service served for real. Only a
ticket the realm signed names a student; it works in the browser that brought it first; it
is answered once; and Keycloak lets a student on only when the account itself holds the
new version, whatever the browser brings back."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Iterator
from html import unescape
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import RSAKey
from sqlalchemy import func, select

from provider.keycloak import ACCEPTED_POLICIES
from provider.policies.review import DECLINED
from provider.services import Services
from provider.storage.models import AuditEvent, PolicyReview
from tests.browser.test_activation_in_chromium import PASSWORD
from tests.conftest import KeycloakUnderTest, RealmUnderTest
from tests.support.flow_client import StudentDetails
from tests.support.keycloak_login import sign_in
from tests.support.policies import accepted_now, published
from tests.support.students import active_student

pytestmark = pytest.mark.keycloak

NEW = ("it-acceptable-use", "2027-01")
NOT_VALID = "This page is no longer valid."
ELSEWHERE = "This link was opened in another browser."
_CSRF = re.compile(
    r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"'
)


@pytest.fixture
def new_version(services: Services) -> Iterator[None]:
    with published(services, *NEW):
        yield


def _active(services: Services, prefix: str, *, due: bool = True) -> StudentDetails:
    """Active; `due`: accepted the version before the new one, else every current one."""
    records = accepted_now(services)
    if due:
        records = [r for r in records if not r.startswith(NEW[0] + "@")]
        records.append(f"{NEW[0]}@2026-09:2026-11-02T09:00:00Z")
    return active_student(services, prefix, PASSWORD, records)


def _stopped_at_the_gate(
    keycloak_server: KeycloakUnderTest, realm: RealmUnderTest, live_url: str, who: StudentDetails
) -> tuple[str, requests.Session]:
    """The review URL Keycloak sent this student to (with its ticket), and the browser."""
    result = sign_in(keycloak_server.url, realm.name, who.user_id, PASSWORD)
    assert not result.ok and result.session is not None
    assert result.location.startswith(f"{live_url}/policies/review?ticket="), result.location
    return result.location, result.session


def _ticket_of(review_url: str) -> str:
    return parse_qs(urlparse(review_url).query)["ticket"][0]


def _claims(ticket: str) -> dict:
    payload = ticket.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _csrf(page: str) -> str:
    found = _CSRF.search(page)
    assert found, "no CSRF token on the page"
    return unescape(found.group(1) or found.group(2))


def _records(services: Services, who: StudentDetails) -> list[str]:
    account = services.keycloak.find_user(who.user_id)
    assert account is not None
    return list(account.attributes.get(ACCEPTED_POLICIES) or [])


def _reviews(services: Services) -> int:
    with services.reads() as db:
        return db.scalar(select(func.count()).select_from(PolicyReview)) or 0


def test_the_current_versions_are_public_and_follow_publication(
    live_url: str, services: Services
) -> None:
    before = requests.get(f"{live_url}/policies/current", timeout=10).json()["current"]
    assert "it-acceptable-use@2026-09" in before
    with published(services, *NEW):
        now = requests.get(f"{live_url}/policies/current", timeout=10).json()["current"]
    assert "it-acceptable-use@2027-01" in now and "it-acceptable-use@2026-09" not in now


def test_only_a_ticket_the_realm_signed_is_taken(
    keycloak_server: KeycloakUnderTest,
    realm: RealmUnderTest,
    live_url: str,
    services: Services,
    new_version: None,
) -> None:
    who = _active(services, "f")
    review_url, _browser = _stopped_at_the_gate(keycloak_server, realm, live_url, who)
    real = _ticket_of(review_url)
    header = json.loads(base64.urlsafe_b64decode(real.split(".")[0] + "=="))
    claims = _claims(real)
    assert claims["typ"] == "umpass-policy-gate" and claims["exp"] - claims["iat"] <= 600

    ours = RSAKey.generate_key(2048, parameters={"kid": header["kid"]})
    forged = jwt.encode({"alg": "RS256", "kid": header["kid"]}, claims, ours)
    # A "signature" made with the realm's public key as an HMAC secret (algorithm confusion).
    jwks = requests.get(
        f"{keycloak_server.url}/realms/{realm.name}/protocol/openid-connect/certs", timeout=10
    ).json()
    public = json.dumps(jwks["keys"][0]).encode()
    head = base64.urlsafe_b64encode(b'{"alg":"HS256","kid":"%s"}' % header["kid"].encode())
    body = real.split(".")[1].encode()
    signing_input = head.rstrip(b"=") + b"." + body
    mac = base64.urlsafe_b64encode(hmac.new(public, signing_input, hashlib.sha256).digest())
    confused = (signing_input + b"." + mac.rstrip(b"=")).decode()
    # An access token: signed by the realm, but not a ticket (this student accepted the
    # new version already, so the gate lets them on to the app).
    access = sign_in(
        keycloak_server.url, realm.name, _active(services, "g", due=False).user_id, PASSWORD
    )
    assert access.ok and access.tokens is not None
    tampered = real.split(".")
    tampered[1] = (
        base64.urlsafe_b64encode(
            json.dumps({**claims, "sub": "00000000-0000-0000-0000-000000000000"}).encode()
        )
        .decode()
        .rstrip("=")
    )
    before = _reviews(services)
    for bad in (
        forged,
        confused,
        ".".join(tampered),
        access.tokens["access_token"],
        "not-a-ticket",
        "",
    ):
        answer = requests.get(f"{live_url}/policies/review", params={"ticket": bad}, timeout=10)
        assert answer.status_code == 400 and NOT_VALID in answer.text
    assert _reviews(services) == before, "a refused ticket left a row"


def test_a_ticket_works_only_in_the_browser_that_brought_it(
    keycloak_server: KeycloakUnderTest,
    realm: RealmUnderTest,
    live_url: str,
    services: Services,
    new_version: None,
) -> None:
    who = _active(services, "b")
    review_url, _ = _stopped_at_the_gate(keycloak_server, realm, live_url, who)
    student = requests.Session()
    first = student.get(review_url, timeout=10, allow_redirects=False)
    assert first.status_code == 303 and first.headers["Location"].endswith("/policies/review")
    page = student.get(f"{live_url}/policies/review", timeout=10)
    assert page.status_code == 200 and "New version of the campus IT policies" in page.text

    copied = requests.Session()
    elsewhere = copied.get(review_url, timeout=10)
    assert elsewhere.status_code == 400 and ELSEWHERE in elsewhere.text
    # Without the bound session nothing can be answered either.
    token = _csrf(copied.get(f"{live_url}/recover/", timeout=10).text)
    refused = copied.post(
        f"{live_url}/policies/review/decline", data={"csrf_token": token}, timeout=10
    )
    assert refused.status_code == 400 and NOT_VALID in refused.text
    assert not any(r.startswith("it-acceptable-use@2027-01:") for r in _records(services, who))


def test_an_answered_ticket_is_not_answered_again(
    keycloak_server: KeycloakUnderTest,
    realm: RealmUnderTest,
    live_url: str,
    services: Services,
    new_version: None,
) -> None:
    who = _active(services, "a")
    review_url, _ = _stopped_at_the_gate(keycloak_server, realm, live_url, who)
    student = requests.Session()
    page = student.get(review_url, timeout=10)
    # The session is a signed cookie: one kept from before the answer can be sent again.
    kept = requests.Session()
    kept.cookies.update(student.cookies)
    accepted = student.post(
        f"{live_url}/policies/review",
        data={"csrf_token": _csrf(page.text), "accept_it_acceptable_use": "y"},
        timeout=10,
        allow_redirects=False,
    )
    assert accepted.status_code == 200 and "/login-actions/authenticate?" in accepted.text
    assert [r for r in _records(services, who) if r.startswith("it-acceptable-use@2027-01:")]
    # A late decline of the same ticket, with the session as it was before the answer
    # (another tab, a replay), changes nothing: no sign-out, no audit of a decline.
    again = kept.post(
        f"{live_url}/policies/review/decline", data={"csrf_token": _csrf(page.text)}, timeout=10
    )
    assert again.status_code == 200 and "/login-actions/authenticate?" in again.text
    with services.reads() as db:
        declined = db.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.subject == who.user_id, AuditEvent.action == DECLINED)
        )
    assert declined == 0


def test_keycloak_goes_on_only_when_the_account_holds_the_version(
    keycloak_server: KeycloakUnderTest,
    realm: RealmUnderTest,
    live_url: str,
    services: Services,
    new_version: None,
) -> None:
    """Straight back to the gate's callback without a word to the service: refused."""
    who = _active(services, "k")
    review_url, browser = _stopped_at_the_gate(keycloak_server, realm, live_url, who)
    callback = _claims(_ticket_of(review_url))["callback"]
    assert callback.startswith(f"{keycloak_server.url}/realms/{realm.name}/login-actions/")
    answer = browser.get(callback, timeout=10, allow_redirects=False)
    assert answer.status_code == 403
    assert "You did not accept the new version of the campus IT policies" in answer.text
    assert not any(r.startswith("it-acceptable-use@2027-01:") for r in _records(services, who))


def test_a_password_grant_refuses_a_due_student_until_they_accept(
    keycloak_server: KeycloakUnderTest,
    realm: RealmUnderTest,
    live_url: str,
    services: Services,
    new_version: None,
) -> None:
    """No page can be shown in a direct grant: a due student gets `invalid_grant` with a
    sentence saying what to do, and a token once the account holds the version."""
    who = _active(services, "p")
    token_url = f"{keycloak_server.url}/realms/{realm.name}/protocol/openid-connect/token"
    grant = {
        "grant_type": "password",
        "client_id": "admin-cli",
        "username": who.user_id,
        "password": PASSWORD,
    }
    refused = requests.post(token_url, data=grant, timeout=30)
    assert refused.status_code == 400 and "access_token" not in refused.text
    assert refused.json()["error"] == "invalid_grant"
    assert "sign in with a browser" in refused.json()["error_description"]
    account = services.keycloak.find_user(who.user_id)
    assert account is not None
    services.keycloak.accept_policies(account.id, [f"{NEW[0]}@{NEW[1]}:2026-12-03T10:00:00Z"])
    allowed = requests.post(token_url, data=grant, timeout=30)
    assert allowed.status_code == 200 and "access_token" in allowed.json()
