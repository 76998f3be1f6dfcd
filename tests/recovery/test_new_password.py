"""A new password: judged like the first one, refused as a sentence with nothing written;
the realm's password history respected; once set, every Keycloak session of the account
ends, the new password signs in and the old one does not, and nobody is signed in for the
student (the last page sends them to sign in).
"""

from __future__ import annotations

import pytest
from flask import Flask
from keycloak import KeycloakAdmin

from provider.services import Services
from tests.support.admin_events import KeycloakWrites
from tests.support.flow_at import DONE_PASSWORD
from tests.support.flow_client import StudentDetails
from tests.support.inbox import Inbox
from tests.support.realm_changes import RealmChanges
from tests.support.recovery import RecoveryClient, put_recovery_at
from tests.support.recovery_record import (
    NONE_WRITTEN,
    RecoveryWrites,
    audited,
    keycloak_id,
    open_session,
    recovery_writes,
    session_alive,
    signs_in,
)

NEW = "quiet harbour 4417 kite"
HISTORY = "passwordHistory(3)"


@pytest.fixture
def at_new_password(app: Flask, inbox: Inbox, active_student: StudentDetails) -> RecoveryClient:
    return put_recovery_at(app, inbox, "new-password", active_student)


def _submit(browser: RecoveryClient, password: str):
    return browser.post("new-password", {"password": password, "confirm": password})


def _assert_refused_untouched(
    browser: RecoveryClient,
    response,
    sentence: str,
    *,
    services: Services,
    admin: KeycloakAdmin,
    inbox: Inbox,
    who: StudentDetails,
) -> None:
    assert response.status_code == 400, response.get_data(as_text=True)[:600]
    assert sentence in response.get_data(as_text=True)
    assert browser.flow().step == "new-password"  # the student chooses another
    assert recovery_writes(admin, keycloak_id(admin, who.user_id)) == NONE_WRITTEN
    assert inbox.mails_to(who.email) == []  # nobody told: nothing happened
    assert audited(services, who.user_id, "recovery.password_reset") == 0
    assert signs_in(services, who.user_id, DONE_PASSWORD)


@pytest.mark.parametrize(
    ("password", "sentence"),
    [
        ("{user_id} harbour kite", "Your password cannot contain your user ID."),
        ("harbour 28/02/2006 kite", "Your password cannot contain your date of birth."),
        ("aaaaaaaaaaaaaaaa", "Choose a harder password: this one would be easy to guess."),
    ],
    ids=["user-id", "date-of-birth", "weak"],
)
def test_the_service_refuses_with_a_sentence_and_writes_nothing(
    password: str,
    sentence: str,
    at_new_password: RecoveryClient,
    active_student: StudentDetails,
    services: Services,
    admin: KeycloakAdmin,
    inbox: Inbox,
    keycloak_writes: KeycloakWrites,
) -> None:
    who = active_student  # born 2006-02-28 (tests/support/students.py)
    refused = _submit(at_new_password, password.format(user_id=who.user_id))
    _assert_refused_untouched(
        at_new_password, refused, sentence, services=services, admin=admin, inbox=inbox, who=who
    )


def test_keycloaks_own_refusal_is_a_sentence_and_nothing_is_written(
    at_new_password: RecoveryClient,
    active_student: StudentDetails,
    services: Services,
    admin: KeycloakAdmin,
    inbox: Inbox,
    realm_changes: RealmChanges,
    keycloak_writes: KeycloakWrites,
) -> None:
    policy = admin.get_realm(services.settings.keycloak.realm)["passwordPolicy"]
    # A rule the service does not check itself: only Keycloak refuses NEW.
    with realm_changes.realm_settings({"passwordPolicy": f"{policy} and specialChars(5)"}):
        refused = _submit(at_new_password, NEW)
    _assert_refused_untouched(
        at_new_password,
        refused,
        "Your password needs more symbols.",
        services=services,
        admin=admin,
        inbox=inbox,
        who=active_student,
    )


def test_the_realms_history_refuses_the_current_password(
    at_new_password: RecoveryClient,
    active_student: StudentDetails,
    services: Services,
    admin: KeycloakAdmin,
    inbox: Inbox,
    realm_changes: RealmChanges,
    keycloak_writes: KeycloakWrites,
) -> None:
    who = active_student
    policy = admin.get_realm(services.settings.keycloak.realm)["passwordPolicy"]
    with realm_changes.realm_settings({"passwordPolicy": f"{policy} and {HISTORY}"}):
        refused = _submit(at_new_password, DONE_PASSWORD)
        _assert_refused_untouched(
            at_new_password,
            refused,
            "You used that password recently. Choose a new one.",
            services=services,
            admin=admin,
            inbox=inbox,
            who=who,
        )
        # The same flow goes on with a password the history does not hold.
        done = _submit(at_new_password, NEW)
        assert done.headers["Location"].endswith("/recover/finished")
    assert signs_in(services, who.user_id, NEW)


def test_a_new_password_signs_out_everywhere_and_signs_nobody_in(
    at_new_password: RecoveryClient,
    active_student: StudentDetails,
    services: Services,
    admin: KeycloakAdmin,
    keycloak_writes: KeycloakWrites,
) -> None:
    who = active_student
    account = keycloak_id(admin, who.user_id)
    # Two real sessions, as on two devices.
    sessions = [open_session(services, who.user_id, DONE_PASSWORD) for _ in range(2)]
    assert len(admin.get_sessions(account)) == 2

    done = _submit(at_new_password, NEW)
    assert done.status_code == 302, done.get_data(as_text=True)[:600]
    assert done.headers["Location"].endswith("/recover/finished")
    # Every session ended, and the recovery opened none: the student is not signed in.
    assert admin.get_sessions(account) == []
    assert not any(session_alive(services, refresh) for refresh in sessions)
    assert "KEYCLOAK" not in (done.headers.get("Set-Cookie") or "").upper()
    finished = at_new_password.get("finished")
    page = finished.get_data(as_text=True)
    assert "Your password is changed, and every device that was signed in is signed out." in page
    sign_in_url = services.settings.after_activation_url
    assert f'href="{sign_in_url}"' in page  # a link to sign in, not a session
    assert admin.get_sessions(account) == []

    assert signs_in(services, who.user_id, NEW)
    assert not signs_in(services, who.user_id, DONE_PASSWORD)
    # (No lock to lift: Keycloak records no event for lifting none.)
    assert recovery_writes(admin, account) == RecoveryWrites(1, 1, 0)
    assert audited(services, who.user_id, "recovery.password_reset") == 1
