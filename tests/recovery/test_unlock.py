"""Unlock only: a student locked out twice over (by Keycloak's brute-force protection, after
wrong passwords at its sign-in page, and by the service's own identify lock) walks the
recovery by text-message code and chooses to unlock. Both locks are lifted, and the
password is untouched: the old one signs in at Keycloak, nothing set it, and a session the
student had open before stays open.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask
from keycloak import KeycloakAdmin

from provider.guards import lockout
from provider.services import Services
from provider.storage.models import IdentifyLockout
from tests.support.admin_events import KeycloakWrites
from tests.support.flow_at import DONE_PASSWORD
from tests.support.flow_client import FlowClient, StudentDetails
from tests.support.inbox import Inbox
from tests.support.recovery import RecoveryClient
from tests.support.recovery_record import (
    RecoveryWrites,
    audited,
    keycloak_id,
    lock_at_keycloak,
    locked_at_keycloak,
    open_session,
    recovery_writes,
    session_alive,
    signs_in,
)


def _identify_lock(services: Services, user_id: str) -> IdentifyLockout | None:
    with services.sessions() as db:
        return db.get(IdentifyLockout, lockout.lock_key(user_id))


def _lock_identify(app: Flask, services: Services, who: StudentDetails) -> None:
    """Wrong activation details typed for the user ID until the service locks it."""
    flow = FlowClient(app.test_client())
    for _ in range(lockout.MAX_FAILURES):
        assert flow.identify(who, activation_code="WRONG-WRONG-WRONG").status_code == 400
    row = _identify_lock(services, who.user_id)
    assert row is not None and row.locked_until is not None
    assert row.locked_until > datetime.now(UTC).replace(tzinfo=row.locked_until.tzinfo)


def test_unlock_lifts_both_locks_and_keeps_the_password(
    app: Flask,
    browser: RecoveryClient,
    inbox: Inbox,
    active_student: StudentDetails,
    services: Services,
    admin: KeycloakAdmin,
    keycloak_writes: KeycloakWrites,
) -> None:
    who = active_student
    account = keycloak_id(admin, who.user_id)
    refresh = open_session(services, who.user_id, DONE_PASSWORD)  # before the lock
    lock_at_keycloak(services, who.user_id, account)
    assert not signs_in(services, who.user_id, DONE_PASSWORD)  # locked: even the right one fails
    _lock_identify(app, services, who)

    # The recovery, by a code to the verified mobile number.
    texts_before = len(inbox.texts_to(who.phone))
    started = browser.start(who.user_id, "phone")
    assert started.headers["Location"].endswith("/recover/code")
    proven = browser.code(inbox.sms_code(who.phone, after=texts_before))
    assert proven.headers["Location"].endswith("/recover/choose")
    choose = browser.get("choose").get_data(as_text=True)
    assert "Your account is locked after too many wrong passwords." in choose
    unlocked = browser.post("choose", {"choice": "unlock"})
    assert unlocked.status_code == 302, unlocked.get_data(as_text=True)[:600]
    assert unlocked.headers["Location"].endswith("/recover/finished")
    finished = browser.get("finished").get_data(as_text=True)
    assert "Your account is unlocked. Your password has not changed." in finished

    # Keycloak's lock is lifted, and so is the service's own.
    assert not locked_at_keycloak(services, account)
    row = _identify_lock(services, who.user_id)
    assert row is not None and (row.failures, row.locked_until) == (0, None)
    # The password stays: the old one signs in, nothing set another, and the session the
    # student had open is still open (unlocking signs nobody out).
    assert signs_in(services, who.user_id, DONE_PASSWORD)
    assert recovery_writes(admin, account) == RecoveryWrites(
        passwords_set=0, sign_outs=0, locks_lifted=1
    )
    assert session_alive(services, refresh)
    assert audited(services, who.user_id, "recovery.unlocked") == 1
    assert audited(services, who.user_id, "recovery.password_reset") == 0
