"""What the help desk and monitoring see of recoveries (issue 15, point 7), after real
recoveries against the real realm: the student's timeline in plain words with no secret,
"clear all lockouts" lifting the recovery lock, recovery locks listed apart from identify's
(whose counts stay as they were) with a mass-lockout banner of their own, the chart of
recoveries per week, and the metrics."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
import requests
from flask import Flask
from sqlalchemy import delete

from provider import audit
from provider.config import Settings
from provider.guards import lockout
from provider.helpdesk.recoveries import monday_of
from provider.helpdesk.timeline import ACTIONS
from provider.services import Services
from provider.storage.models import IdentifyLockout
from tests.conftest import METRICS_TOKEN
from tests.support.console import Console, table_rows
from tests.support.flow_client import StudentDetails
from tests.support.inbox import Inbox
from tests.support.realm_changes import RealmChanges
from tests.support.recovery import RecoveryClient, activate_student
from tests.support.recovery_record import downstream_events
from tests.support.recovery_story import Walked, code_sent, lock_recovery, recover, wrong
from tests.support.students import enrol_student

pytestmark = pytest.mark.keycloak


@pytest.fixture(scope="module")
def staff_account(module_staff: RealmChanges) -> str:
    """One console admin for the module (admins see every console page)."""
    return module_staff.add_staff("activation-admin").username


@pytest.fixture
def console(live_url: str, staff_account: str) -> Console:
    return Console(live_url, staff_account)


@pytest.fixture
def active_student(app: Flask, inbox: Inbox, services: Services) -> StudentDetails:
    """An active student with a verified email and mobile number."""
    who = enrol_student(services, "v")
    activate_student(app, inbox, who)
    return who


def _timeline(console: Console, user_id: str) -> list[tuple[str, str, str]]:
    """(raw action, what the desk reads, its details) per line, newest first."""
    page = console.get(f"/helpdesk/students/{user_id}").text
    return [(r.attrs["data-action"], r.cells[2], r.cells[3]) for r in table_rows(page, "timeline")]


def test_the_timeline_tells_each_recovery_event_in_plain_words_and_no_secret(
    app: Flask,
    inbox: Inbox,
    services: Services,
    console: Console,
    active_student: StudentDetails,
) -> None:
    who, walked = active_student, Walked()
    # An unlock by a text-message code, after one wrong try ...
    first = RecoveryClient(app, inbox)
    walked.codes.append(code := code_sent(first, inbox, who, who.user_id, "phone"))
    assert first.code(wrong(code)).status_code == 400
    assert first.code(code).headers["Location"].endswith("/recover/choose")
    assert first.post("choose", {"choice": "unlock"}).headers["Location"].endswith("/finished")
    # ... a new password by an email code ...
    recover(app, inbox, who, choice="password", walked=walked)
    # ... then, typing the email address, a start inside the phone's minute (no code goes
    # out), wrong codes until the lock, and "start again" (not audited: before the proof
    # only an existing account would get that write).
    lock_recovery(app, inbox, who, typed=who.email, channel="phone", sends=False).post(
        "restart", {}
    )

    lines = _timeline(console, who.user_id)
    # The oldest of each (lines are newest first; the last write wins).
    said = {action: (what, detail) for action, what, detail in lines}
    expected = {
        "recovery.code_sent": ("Recovery started: a code was sent", "by text message"),
        "recovery.code_failed": ("Recovery: a wrong code", "wrong code"),
        "recovery.code_proven": ("Recovery: the code was right", ""),
        "recovery.step.choose": ("Recovery: offered to unlock or set a new password", ""),
        "recovery.unlocked": ("Account unlocked by the student (recovery)", "by text message"),
        "recovery.step.new-password": ("Recovery: chose a new password", ""),
        "recovery.password_reset": ("Password reset by the student (recovery)", "by email"),
        "recovery.code_not_sent": (
            "Recovery started: no code was sent",
            "by text message; too many codes sent already",
        ),
    }
    for action, words in expected.items():
        assert said.get(action) == words, action
    locked = [detail for action, _, detail in lines if action == "recovery.locked"]
    # On the university's clock (Asia/Macau by default), as the lock's own row says.
    with services.sessions() as db:
        row = db.get(IdentifyLockout, lockout.recovery_key(who.user_id))
        assert row is not None and row.locked_until is not None
    until = row.locked_until.astimezone(ZoneInfo("Asia/Macau")).strftime("%Y-%m-%d %H:%M")
    assert locked == [f"until {until}"]
    # Every line in words, the activation's too: no raw event name is left to decode.
    assert all(what != action and "." not in what for action, what, _ in lines), lines
    assert "Account activated" in {what for _, what, _ in lines}

    page = console.get(f"/helpdesk/students/{who.user_id}").text
    for secret in (*walked.codes, *walked.passwords, who.email, who.phone, who.code):
        assert secret not in page
    assert not re.search(r"[0-9a-f]{32,}", page, re.IGNORECASE)  # no digest of anything


def test_every_recovery_reason_reads_as_words(
    services: Services, console: Console, active_student: StudentDetails
) -> None:
    """Display only: the reasons a start sends nothing, as provider.recovery records them."""
    reasons = {
        "not_active": "the account is not active",
        "disabled": "the account is disabled",
        "no_verified_contact": "no verified contact there",
        "throttled": "too many codes sent already",
        "contact_changed": "the contact changed since the start",
    }
    for reason in reasons:
        audit.record_now(
            services.sessions,
            audit.STUDENT,
            "recovery.code_not_sent",
            active_student.user_id,
            channel="email",
            reason=reason,
        )
    audit.record_now(
        services.sessions,
        audit.STUDENT,
        "recovery.birth_date_failed",
        active_student.user_id,
    )
    lines = _timeline(console, active_student.user_id)
    not_sent = [(what, detail) for action, what, detail in lines if action.endswith("not_sent")]
    assert sorted(not_sent) == sorted(
        ("Recovery started: no code was sent", f"by email; {words}") for words in reasons.values()
    )
    assert ("recovery.birth_date_failed", "Recovery: the date of birth did not match", "") in lines
    # Every recovery event the flow records has its words.
    recorded = {"recovery." + name for name in (
        "code_sent", "code_not_sent", "code_failed", "birth_date_failed", "locked",
        "code_proven", "step.birth-date", "step.choose", "step.new-password", "unlocked",
        "password_reset", "restarted",
    )}  # fmt: skip
    assert recorded <= set(ACTIONS)


def test_clearing_all_lockouts_lifts_the_recovery_lock(
    app: Flask,
    inbox: Inbox,
    console: Console,
    active_student: StudentDetails,
    services: Services,
) -> None:
    who = active_student
    lock_recovery(app, inbox, who)
    page = console.get(f"/helpdesk/students/{who.user_id}").text
    assert re.search(r'id="recovery-lock">until \d{4}-', page)
    # Locked: a new recovery typed another way gets no 429 (that would say whose the
    # email is), but its right code is a wrong one while the account's counter is locked.
    blocked = RecoveryClient(app, inbox)
    code = code_sent(blocked, inbox, who, who.email, "phone")
    refused = blocked.code(code)
    assert refused.status_code == 400 and "That code is not right" in refused.get_data(True)

    unlocked_before = downstream_events(services, who.user_id, "student.unlocked")
    console.post(f"/helpdesk/students/{who.user_id}/unlock", f"/helpdesk/students/{who.user_id}")
    page = console.get(f"/helpdesk/students/{who.user_id}").text
    assert 'id="recovery-lock">no (' in page
    # Downstream is told, once.
    assert downstream_events(services, who.user_id, "student.unlocked") == unlocked_before + 1
    assert blocked.code(code).headers.get("Location", "").endswith("/recover/choose")


def _metrics(live_url: str) -> str:
    return requests.get(
        f"{live_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=30
    ).text


def _sample(text: str, name: str, labels: str = "") -> float:
    found = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_recovery_locks_are_listed_apart_and_leave_the_identify_counts_alone(
    app: Flask,
    inbox: Inbox,
    services: Services,
    console: Console,
    live_url: str,
    active_student: StudentDetails,
) -> None:
    who = active_student
    before_page = console.get("/helpdesk/lockouts").text
    before = _metrics(live_url)
    lock_recovery(app, inbox, who)
    after_page = console.get("/helpdesk/lockouts").text
    after = _metrics(live_url)

    rows = [r for r in table_rows(after_page, "locked-ids") if who.user_id in r.cells[0]]
    assert [(r.attrs["data-door"], r.cells[0], r.cells[1]) for r in rows] == [
        ("recovery", who.user_id, "recovery")  # the user ID, never the counter's key
    ]
    assert f"r/{who.user_id}" not in after_page

    def count(page: str, name: str) -> int:
        found = re.search(rf'id="{name}">(\d+)<', page)
        assert found, name
        return int(found.group(1))

    # Identify's figures (the mass-lockout banner's) do not move; recovery's do.
    assert count(after_page, "locked-now") == count(before_page, "locked-now")
    assert count(after_page, "locked-recently") == count(before_page, "locked-recently")
    assert count(after_page, "recovery-locked-now") == count(before_page, "recovery-locked-now") + 1
    assert (
        count(after_page, "recovery-locked-recently")
        == count(before_page, "recovery-locked-recently") + 1
    )
    assert _sample(after, "umpass_identify_lockouts_recent") == (
        _sample(before, "umpass_identify_lockouts_recent")
    )
    assert _sample(after, "umpass_identify_lockouts_active", '{intake="(not enrolled)"}') == (
        _sample(before, "umpass_identify_lockouts_active", '{intake="(not enrolled)"}')
    )
    assert _sample(after, "umpass_recovery_lockouts_active") == (
        _sample(before, "umpass_recovery_lockouts_active") + 1
    )


def test_a_mass_recovery_lockout_raises_the_banner_on_its_own(
    services: Services, settings: Settings, console: Console, live_url: str
) -> None:
    """More recovery locks within the hour than the threshold: the banner says so, by the
    same counter the code step uses; identify's sentence (and gauge) stay as they were."""
    keys = [
        lockout.recovery_key(f"q{secrets.token_hex(3)}")
        for _ in range(settings.mass_lockout_threshold + 1)
    ]
    now = datetime.now(UTC)
    try:
        for key in keys:
            for _ in range(lockout.MAX_FAILURES):
                assert lockout.begin_attempt(services.sessions, key, now) is None
                lockout.record_failure(services.sessions, key, now)
        page = console.get("/helpdesk/lockouts").text
        metrics = _metrics(live_url)
    finally:  # other tests expect no banner while identify's count is low
        with services.sessions.begin() as session:
            session.execute(delete(IdentifyLockout).where(IdentifyLockout.user_id.in_(keys)))
    assert 'id="mass-lockout"' in page
    assert (
        f"locked out of recovery in the last hour, more than {settings.mass_lockout_threshold}"
        in page
    )
    assert _sample(metrics, "umpass_recovery_lockouts_recent") > settings.mass_lockout_threshold
    if _sample(metrics, "umpass_identify_lockouts_recent") <= settings.mass_lockout_threshold:
        assert "That is what an attack on an intake looks like" not in page
        assert _sample(metrics, "umpass_identify_mass_lockout") == 0


def _this_week(console: Console) -> tuple[int, int]:
    page = console.get("/helpdesk/recoveries").text
    rows = table_rows(page, "recoveries-table")
    assert len(rows) == 12
    last = rows[-1].cells
    assert last[0] == monday_of(datetime.now(UTC).date()).isoformat()
    assert 'role="img"' in page and "Recoveries per week, last 12 weeks" in page
    return int(last[1]), int(last[2])


def test_the_chart_counts_this_weeks_unlocks_and_new_passwords(
    app: Flask, inbox: Inbox, console: Console, active_student: StudentDetails
) -> None:
    unlocked, reset = _this_week(console)
    recover(app, inbox, active_student, choice="unlock", channel="phone")
    recover(app, inbox, active_student, choice="password")
    assert _this_week(console) == (unlocked + 1, reset + 1)


def test_the_metrics_count_recoveries_codes_and_locks_without_personal_data(
    app: Flask, inbox: Inbox, services: Services, live_url: str, active_student: StudentDetails
) -> None:
    who = active_student
    pending = enrol_student(services, "w")  # not active: the start sends nothing
    before = _metrics(live_url)
    recover(app, inbox, who, choice="unlock", channel="phone")
    recover(app, inbox, who, choice="password")
    lock_recovery(app, inbox, who, typed=who.email, sends=False)  # inside the minute
    assert RecoveryClient(app, inbox).start(pending.user_id, "email").status_code == 302
    after = _metrics(live_url)

    def grew(name: str, labels: str = "") -> float:
        return _sample(after, name, labels) - _sample(before, name, labels)

    assert grew("umpass_recoveries_total", '{outcome="unlocked"}') == 1
    assert grew("umpass_recoveries_total", '{outcome="reset"}') == 1
    assert grew("umpass_recovery_codes_sent_total", '{channel="email"}') == 1
    assert grew("umpass_recovery_codes_sent_total", '{channel="phone"}') == 1
    assert grew("umpass_recovery_codes_not_sent_total", '{reason="throttled"}') == 1
    assert grew("umpass_recovery_codes_not_sent_total", '{reason="not_active"}') == 1
    assert grew("umpass_recovery_locks_total") == 1
    assert "# HELP umpass_recoveries_total Self-service recoveries completed" in after
    for personal in (who.user_id, who.email, who.phone, pending.user_id):
        assert personal not in after
