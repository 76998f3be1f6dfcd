"""Nothing lost, nothing doubled: Keycloak failing at each of the recovery's writes, then the
student's retry, which ends fully done and done once.

A new password is three writes in order (provider/recovery/writes.py): set the password,
sign the account out everywhere, lift the brute-force lock; unlock is the last alone. The
faults come from a real TCP proxy in front of Keycloak (tests/support/fault_proxy.py) that
lets every read through and fails only the write a test names: Keycloak unreachable (the
request never arrives), a 503 from a load balancer with no node up, or the write applied
and its answer lost. After each failure the flow still stands at its step, nobody has
been told and nothing is audited; the retry (the same form again) ends with the password
set once, every session gone, the lock lifted, each verified contact told exactly once
and one audit event. Keycloak's admin events say what it applied.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests
from flask import Flask
from keycloak import KeycloakAdmin
from sqlalchemy import select

from provider.flows.steps.activate import CLAIM_LEASE
from provider.keycloak import KeycloakGateway
from provider.services import Services
from provider.services import services as app_services
from provider.storage.models import Flow
from tests.support.admin_events import KeycloakWrites
from tests.support.fault_proxy import Fault, FaultProxy
from tests.support.flow_at import DONE_PASSWORD
from tests.support.flow_client import StudentDetails, csrf_token
from tests.support.inbox import Inbox
from tests.support.realm_changes import RealmChanges
from tests.support.recovery import RecoveryClient, put_recovery_at
from tests.support.recovery_at import (
    WRITES,
    CountedReplicas,
    hold_recovery,
    write_request,
)
from tests.support.recovery_record import (
    Locked,
    RecoveryWrites,
    audited,
    downstream_events,
    keycloak_id,
    locked_at_keycloak,
    recovery_writes,
    session_alive,
    signs_in,
)
from tests.support.replicas import HttpBrowser

NEW = "quiet harbour 4417 kite"
OLDER = "amber crane 2290 lattice"  # an earlier password of the account
CURRENT = "velvet tundra 5813 oboe"  # the one it holds now
HISTORY = "passwordHistory(3)"
TRY_AGAIN = "Try again in a moment"

FAULTS = [Fault.UNREACHABLE, Fault.UNAVAILABLE_503, Fault.ANSWER_LOST]


def _arm(proxy: FaultProxy, services: Services, account: str, write: str, fault: Fault):
    method, path = write_request(write, services.settings.keycloak.realm, account)
    return proxy.arm(method, path, fault)


def _submit(browser: RecoveryClient, password: str = NEW):
    return browser.post("new-password", {"password": password, "confirm": password})


def _assert_retriable(
    browser: RecoveryClient,
    response,
    step: str,
    services: Services,
    inbox: Inbox,
    who: StudentDetails,
) -> None:
    page = response.get_data(as_text=True)
    assert response.status_code == 503, page[:600]
    assert TRY_AGAIN in page
    assert browser.flow().step == step  # the same form, again
    assert (inbox.mails_to(who.email), inbox.texts_to(who.phone)) == ([], [])
    assert audited(services, who.user_id, "recovery.password_reset") == 0
    assert audited(services, who.user_id, "recovery.unlocked") == 0


def _assert_done(response) -> None:
    assert response.status_code == 302, response.get_data(as_text=True)[:600]
    assert response.headers["Location"].endswith("/recover/finished")


def _assert_told_once(inbox: Inbox, who: StudentDetails) -> None:
    assert len(inbox.mails_to(who.email)) == 1
    assert len(inbox.texts_to(who.phone)) == 1


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name.lower())
@pytest.mark.parametrize("write", WRITES)
def test_a_fault_at_each_write_of_a_new_password_then_the_retry_finishes(
    write: str,
    fault: Fault,
    app: Flask,
    inbox: Inbox,
    locked: Locked,
    services: Services,
    admin: KeycloakAdmin,
    keycloak_writes: KeycloakWrites,
    proxy: FaultProxy,
) -> None:
    who, account = locked.who, locked.account
    browser = put_recovery_at(app, inbox, "new-password", who)
    trap = _arm(proxy, services, account, write, fault)
    failed = _submit(browser)
    assert trap.fired.is_set()
    _assert_retriable(browser, failed, "new-password", services, inbox, who)

    _assert_done(_submit(browser))
    assert not locked_at_keycloak(services, account)
    assert admin.get_sessions(account) == []
    assert not session_alive(services, locked.refresh)
    assert signs_in(services, who.user_id, NEW)
    assert not signs_in(services, who.user_id, DONE_PASSWORD)
    # Written once each; a sign-out whose answer was lost is repeated (harmlessly).
    repeated_sign_out = write == "sign-out" and fault is Fault.ANSWER_LOST
    assert recovery_writes(admin, account) == RecoveryWrites(
        passwords_set=1, sign_outs=2 if repeated_sign_out else 1, locks_lifted=1
    )
    _assert_told_once(inbox, who)
    assert audited(services, who.user_id, "recovery.password_reset") == 1


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name.lower())
def test_a_fault_at_the_unlock_then_the_retry_finishes(
    fault: Fault,
    app: Flask,
    inbox: Inbox,
    locked: Locked,
    services: Services,
    admin: KeycloakAdmin,
    keycloak_writes: KeycloakWrites,
    proxy: FaultProxy,
) -> None:
    who, account = locked.who, locked.account
    browser = put_recovery_at(app, inbox, "choose", who)
    trap = _arm(proxy, services, account, "lift-lock", fault)
    failed = browser.post("choose", {"choice": "unlock"})
    assert trap.fired.is_set()
    _assert_retriable(browser, failed, "choose", services, inbox, who)

    _assert_done(browser.post("choose", {"choice": "unlock"}))
    assert not locked_at_keycloak(services, account)
    assert session_alive(services, locked.refresh)  # unlocking signs nobody out
    assert signs_in(services, who.user_id, DONE_PASSWORD)  # the password stays
    assert recovery_writes(admin, account) == RecoveryWrites(0, 0, 1)
    _assert_told_once(inbox, who)
    assert audited(services, who.user_id, "recovery.unlocked") == 1
    assert downstream_events(services, who.user_id, "student.unlocked") == 1


@pytest.mark.parametrize("choice", ["unlock", "password"])
def test_keycloak_down_changes_nothing_and_the_retry_finishes(
    choice: str,
    app: Flask,
    inbox: Inbox,
    locked: Locked,
    services: Services,
    gateway: KeycloakGateway,
    admin: KeycloakAdmin,
    keycloak_writes: KeycloakWrites,
    proxy: FaultProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    who, account = locked.who, locked.account
    step = "choose" if choice == "unlock" else "new-password"
    browser = put_recovery_at(app, inbox, step, who)
    proxy.close()  # Keycloak is unreachable for every call
    down = browser.post("choose", {"choice": "unlock"}) if step == "choose" else _submit(browser)
    assert down.status_code == 503, down.get_data(as_text=True)[:600]
    assert browser.flow().step == step
    assert recovery_writes(admin, account) == RecoveryWrites(0, 0, 0)
    assert locked_at_keycloak(services, account)
    assert (inbox.mails_to(who.email), inbox.texts_to(who.phone)) == ([], [])

    monkeypatch.setattr(app_services(app), "keycloak", gateway)  # Keycloak is back
    retry = browser.post("choose", {"choice": "unlock"}) if step == "choose" else _submit(browser)
    _assert_done(retry)
    assert not locked_at_keycloak(services, account)
    password = DONE_PASSWORD if step == "choose" else NEW
    assert signs_in(services, who.user_id, password)
    _assert_told_once(inbox, who)


@pytest.fixture
def with_history(
    services: Services, admin: KeycloakAdmin, realm_changes: RealmChanges
) -> Iterator[None]:
    policy = admin.get_realm(services.settings.keycloak.realm)["passwordPolicy"]
    with realm_changes.realm_settings({"passwordPolicy": f"{policy} and {HISTORY}"}):
        yield


def test_a_password_that_landed_unanswered_is_taken_by_the_retry_despite_history(
    with_history: None,
    app: Flask,
    inbox: Inbox,
    active_student: StudentDetails,
    services: Services,
    admin: KeycloakAdmin,
    keycloak_writes: KeycloakWrites,
    proxy: FaultProxy,
) -> None:
    who = active_student
    account = keycloak_id(admin, who.user_id)
    browser = put_recovery_at(app, inbox, "new-password", who)
    trap = _arm(proxy, services, account, "set-password", Fault.ANSWER_LOST)
    assert _submit(browser).status_code == 503
    assert trap.fired.is_set()
    assert signs_in(services, who.user_id, NEW)  # it landed: the history now holds it

    # The retry with the same password is the write that landed, not a reuse.
    _assert_done(_submit(browser))
    assert recovery_writes(admin, account).passwords_set == 1
    assert signs_in(services, who.user_id, NEW)
    _assert_told_once(inbox, who)
    assert audited(services, who.user_id, "recovery.password_reset") == 1


def test_a_refused_old_password_is_not_taken_for_one_that_landed(
    with_history: None,
    app: Flask,
    inbox: Inbox,
    active_student: StudentDetails,
    services: Services,
    admin: KeycloakAdmin,
    keycloak_writes: KeycloakWrites,
    proxy: FaultProxy,
) -> None:
    """The first try never reached Keycloak; the retry's password is an older one, which
    the history refuses. That refusal stands: the password did not change."""
    who = active_student
    account = keycloak_id(admin, who.user_id)
    # The account's history: DONE_PASSWORD, OLDER, and now CURRENT.
    services.keycloak.set_password(account, OLDER)
    services.keycloak.set_password(account, CURRENT)
    browser = put_recovery_at(app, inbox, "new-password", who)
    trap = _arm(proxy, services, account, "set-password", Fault.UNAVAILABLE_503)
    assert _submit(browser, OLDER).status_code == 503
    assert trap.fired.is_set()

    refused = _submit(browser, OLDER)
    assert refused.status_code == 400, refused.get_data(as_text=True)[:600]
    assert "You used that password recently. Choose a new one." in refused.get_data(as_text=True)
    assert browser.flow().step == "new-password"
    assert signs_in(services, who.user_id, CURRENT)
    assert not signs_in(services, who.user_id, OLDER)
    assert (inbox.mails_to(who.email), inbox.texts_to(who.phone)) == ([], [])
    assert audited(services, who.user_id, "recovery.password_reset") == 0


def _expire_claim(services: Services, user_id: str) -> None:
    """What the passing of CLAIM_LEASE does after a request died mid-recovery."""
    with services.sessions.begin() as db:
        flow = db.scalars(
            select(Flow).where(Flow.user_id == user_id, Flow.step == "new-password")
        ).one()
        old = (datetime.now(UTC) - CLAIM_LEASE - timedelta(seconds=1)).isoformat()
        flow.state = {**flow.state, "claim": old}


def test_a_crash_while_the_outcome_is_recorded_then_the_retry_records_it_once(
    counted_replicas: CountedReplicas,
    app: Flask,
    inbox: Inbox,
    locked: Locked,
    services: Services,
    admin: KeycloakAdmin,
    keycloak_writes: KeycloakWrites,
) -> None:
    """The worker dies with Keycloak's writes in, while the outcome and its audit event
    are being written: neither stays without the other, so the retry records it once."""
    who, account = locked.who, locked.account
    replica, _ = counted_replicas.replicas
    browser = HttpBrowser(replica.url)
    hold_recovery(browser, put_recovery_at(app, None, "new-password", who).flow_id)

    def submit():
        token = csrf_token(browser.get("/recover/new-password"))  # type: ignore[arg-type]
        form = {"csrf_token": token, "password": NEW, "confirm": NEW}
        return browser.post("/recover/new-password", form)

    replica.crash_at("at-recovery-audit")
    with pytest.raises(requests.ConnectionError):
        submit()  # the worker died: no answer at all
    assert not replica.crash_armed("at-recovery-audit")  # it died there
    assert recovery_writes(admin, account) == RecoveryWrites(1, 1, 1)
    assert audited(services, who.user_id, "recovery.password_reset") == 0
    assert downstream_events(services, who.user_id, "student.password_reset") == 0
    assert (inbox.mails_to(who.email), inbox.texts_to(who.phone)) == ([], [])
    # Within the lease the flow still looks busy; after it, the retry finishes.
    assert submit().status_code == 409
    _expire_claim(services, who.user_id)
    _assert_done(submit())
    assert recovery_writes(admin, account) == RecoveryWrites(1, 1, 1)
    assert audited(services, who.user_id, "recovery.password_reset") == 1
    assert downstream_events(services, who.user_id, "student.password_reset") == 1
    _assert_told_once(inbox, who)
    assert signs_in(services, who.user_id, NEW)


@pytest.mark.parametrize("step", ["choose", "new-password"])
def test_an_account_no_longer_active_is_not_written(
    step: str,
    app: Flask,
    inbox: Inbox,
    active_student: StudentDetails,
    services: Services,
    admin: KeycloakAdmin,
    keycloak_writes: KeycloakWrites,
) -> None:
    """Proven a while ago is not enough: an account the help desk disabled since is left
    as it is."""
    who = active_student
    account = keycloak_id(admin, who.user_id)
    browser = put_recovery_at(app, inbox, step, who)
    admin.update_user(account, {"enabled": False})
    refused = browser.post("choose", {"choice": "unlock"}) if step == "choose" else _submit(browser)
    assert refused.status_code == 409, refused.get_data(as_text=True)[:600]
    assert "cannot be recovered here any more" in refused.get_data(as_text=True)
    assert browser.flow().step == step
    assert recovery_writes(admin, account) == RecoveryWrites(0, 0, 0)
    assert (inbox.mails_to(who.email), inbox.texts_to(who.phone)) == ([], [])
