"""Why the service never takes `login_hint` for who is signing in (README, "Re-acceptance at
the next sign-in"): any browser can reach the activation provider through Keycloak's broker
with a `login_hint` of its choosing, naming another (active) student, without knowing
anything of theirs. A re-acceptance that wrote evidence, or answered the broker, for the
`login_hint` account would let a stranger act for that student."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urlparse

import requests

from provider.keycloak import ACCEPTED_POLICIES
from provider.services import Services
from tests.browser.test_activation_in_chromium import PASSWORD
from tests.conftest import KeycloakUnderTest, RealmUnderTest
from tests.support.keycloak_login import authorization_request, demo_callback
from tests.support.policies import accepted_now
from tests.support.students import enrol_student

_ACTION = re.compile(r'<form[^>]*id="kc-form-login"[^>]*action="([^"]+)"')


def test_a_login_hint_chosen_by_the_browser_reaches_the_activation_provider(
    keycloak_server: KeycloakUnderTest, realm: RealmUnderTest, services: Services
) -> None:
    victim = enrol_student(services, "h")
    account = services.keycloak.find_user(victim.user_id)
    assert account is not None
    services.keycloak.activate(
        account.id, PASSWORD, attributes={ACCEPTED_POLICIES: accepted_now(services)}
    )

    stranger = requests.Session()
    params, _verifier = authorization_request("umpass-demo", demo_callback())
    base = f"{keycloak_server.url}/realms/{realm.name}"
    page = stranger.get(
        f"{base}/protocol/openid-connect/auth",
        params={**params, "login_hint": victim.user_id},
        timeout=30,
    )
    for cookie in stranger.cookies:
        cookie.secure = False  # Keycloak marks them Secure on loopback (README)
    found = _ACTION.search(page.text)
    assert found, "Keycloak did not show its login form"
    form = {k: v[0] for k, v in parse_qs(urlparse(html.unescape(found[1])).query).items()}
    # The endpoint behind Keycloak's identity-provider buttons: hidden providers answer too.
    hop = stranger.get(
        f"{base}/broker/umpass-activation/login",
        params={k: form[k] for k in ("client_id", "tab_id", "session_code")},
        allow_redirects=False,
        timeout=30,
    )
    assert hop.status_code in (302, 303), hop.text[:300]
    target = urlparse(hop.headers["Location"])
    assert target.path == "/oidc/authorize"
    # No password typed, no account proven: the provider is told "victim" all the same.
    assert parse_qs(target.query)["login_hint"] == [victim.user_id]
