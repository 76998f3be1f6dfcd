"""Keycloak's own password reset is no way around the service's recovery (/recover/).

Two layers: the realm's `resetPasswordAllowed` is off (apply requires it; a hand edit is
drift that `--check` reports), and the realm's reset-credentials flow is one that only
refuses, so a reset switched on by hand still changes no password and mails no link.
Keycloak's mail goes to the suite's SMTP server here, and a mail Keycloak does send (an
admin's "update password" email) proves the wiring before "no mail" is believed.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest
import requests
from keycloak import KeycloakAdmin

from provider.keycloak import ACCEPTED_POLICIES
from provider.services import Services
from tests.browser.page_states import keycloak_text
from tests.conftest import KeycloakUnderTest, RealmUnderTest
from tests.support.cli import run_module
from tests.support.flow_client import StudentDetails
from tests.support.inbox import Inbox
from tests.support.keycloak_login import authorization_request, demo_callback, sign_in
from tests.support.policies import accepted_now
from tests.support.realm_changes import RealmChanges
from tests.support.students import enrol_student

PASSWORD = "lantern quartz meadow 2047"


@pytest.fixture
def keycloak_mails_to_inbox(realm_changes: RealmChanges, inbox: Inbox) -> Iterator[None]:
    """Keycloak's outgoing mail goes to the suite's SMTP server for the test."""
    smtp = {"host": "127.0.0.1", "port": str(inbox.port), "from": "sso@example.edu"}
    with realm_changes.realm_settings({"smtpServer": smtp}):
        yield


@pytest.fixture
def student(services: Services) -> StudentDetails:
    """An active student with a verified email: what Keycloak's reset would mail."""
    who = enrol_student(services, "r")
    account = services.keycloak.find_user(who.user_id)
    assert account is not None
    services.keycloak.activate(
        account.id, PASSWORD, attributes={ACCEPTED_POLICIES: accepted_now(services)}
    )
    services.keycloak.set_email(account.id, who.email, verified=True)
    return who


def _reset_attempts(
    server: KeycloakUnderTest, realm: str, username: str
) -> list[requests.Response]:
    """Every way into Keycloak's reset: its URL alone, then as the sign-in page's "forgot
    password" link would (inside a started sign-in), shown and submitted with the user ID."""
    reset = f"{server.url}/realms/{realm}/login-actions/reset-credentials"
    alone = requests.get(reset, params={"client_id": "umpass-demo"}, timeout=30)
    browser = requests.Session()
    params, _ = authorization_request("umpass-demo", demo_callback())
    page = browser.get(
        f"{server.url}/realms/{realm}/protocol/openid-connect/auth", params=params, timeout=30
    )
    for cookie in browser.cookies:  # Keycloak marks them Secure even on loopback
        cookie.secure = False
    tab = re.search(r"tab_id=([\w-]+)", page.text)
    assert tab, "Keycloak did not start a sign-in"
    inside = {"client_id": "umpass-demo", "tab_id": tab.group(1)}
    shown = browser.get(reset, params=inside, allow_redirects=False, timeout=30)
    # The user ID goes where a form on the page would send it (Keycloak's reset form posts
    # to an action URL of its own), else to the reset URL itself.
    form = re.search(r'<form[^>]*action="([^"]+)"', shown.text)
    action = html.unescape(form.group(1)) if form else reset
    submitted = browser.post(
        action,
        params=None if form else inside,
        data={"username": username},
        allow_redirects=False,
        timeout=30,
    )
    return [alone, shown, submitted]


@pytest.mark.parametrize(
    ("switched_on", "status"),
    [(False, 400), (True, 401)],
    ids=["as-applied", "switched-on-by-hand"],
)
def test_keycloak_resets_no_password_and_mails_no_link(
    keycloak_server: KeycloakUnderTest,
    realm: RealmUnderTest,
    admin: KeycloakAdmin,
    realm_changes: RealmChanges,
    keycloak_mails_to_inbox: None,
    inbox: Inbox,
    student: StudentDetails,
    switched_on: bool,
    status: int,
) -> None:
    assert admin.get_realm(realm.name)["resetPasswordAllowed"] is False  # as applied
    if switched_on:
        realm_changes.update_realm({"resetPasswordAllowed": True})
    refusal = keycloak_text(
        keycloak_server.url, realm.name, "en", "resetCredentialNotAllowedMessage"
    )
    for answer in _reset_attempts(keycloak_server, realm.name, student.user_id):
        # 400: Keycloak's own refusal (reset off); 401: the realm's reset flow, which only
        # refuses. Either way the page says where passwords are reset, and asks nothing.
        assert answer.status_code == status, answer.text[:300]
        assert refusal in html.unescape(answer.text)
        assert 'name="username"' not in answer.text and 'name="password-new"' not in answer.text

    # Keycloak does mail this student (the admin's email): so a reset mail would have come.
    user_id = admin.get_user_id(student.user_id)
    assert user_id is not None
    admin.send_update_account(user_id=user_id, payload=["UPDATE_PASSWORD"])
    mails = inbox.mails_to(student.email)
    assert len(mails) == 1, [m.message["Subject"] for m in mails]
    assert "reset-credentials" not in mails[0].text
    assert sign_in(keycloak_server.url, realm.name, student.user_id, PASSWORD).ok


def test_check_reports_reset_switched_on_by_hand(
    keycloak_server: KeycloakUnderTest, realm: RealmUnderTest, realm_changes: RealmChanges
) -> None:
    realm_changes.update_realm({"resetPasswordAllowed": True})
    result = run_module(
        "keycloak_config.apply",
        realm.env(keycloak_server),
        "--check",
        "--fast-hash",
        "--theme",
        "--with-demo",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "resetPasswordAllowed: on → off" in result.stdout
    assert "a contact the student verified" in result.stdout  # the why
