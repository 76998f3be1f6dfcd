"""The activation funnel counted against an intake whose every student's story is known."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from sqlalchemy.orm import Session, sessionmaker

from provider.helpdesk.funnel import ORDER, as_csv, funnels
from provider.storage.models import ActivationCode, AuditEvent, Student

NOW = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)
LATER, EARLIER = NOW + timedelta(days=30), NOW - timedelta(days=1)

# user ID -> (audit actions in order, codes as (expires_at, used, revoked))
STORIES = {
    "done001": (
        ["identify.ok", "step.contacts", "step.password", "account.activated"],
        [(LATER, True, False)],
    ),
    "twice02": (["identify.ok", "identify.ok", "step.contacts"], [(LATER, False, False)]),
    "lock003": (["identify.ok", "identify.locked", "identify.locked"], [(LATER, False, False)]),
    "late004": ([], [(EARLIER, False, False)]),  # its only code ran out unused
    "idle005": ([], [(LATER, False, False)]),
    "redo006": ([], [(LATER, False, True), (LATER, False, False)]),  # re-issued: live again
    "gone007": ([], [(LATER, False, True)]),  # revoked, none live: no way in any more
}


def _arrange(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        for n, (user_id, (actions, codes)) in enumerate(STORIES.items()):
            session.add(Student(user_id=user_id, dob_hash="d", id_last4_hash="i", intake="fall"))
            for action in actions:
                session.add(AuditEvent(actor="student", action=action, subject=user_id))
            for k, (expires, used, revoked) in enumerate(codes):
                session.add(
                    ActivationCode(
                        user_id=user_id,
                        code_hash=f"{n}-{k}".ljust(64, "0"),
                        issued_at=NOW - timedelta(days=2),
                        expires_at=expires,
                        used_at=NOW if used else None,
                        revoked_at=NOW if revoked else None,
                    )
                )
        # Another intake, and an event of a student outside every intake: neither counts here.
        session.add(Student(user_id="othr008", dob_hash="d", id_last4_hash="i", intake="=cmd"))
        session.add(AuditEvent(actor="student", action="identify.ok", subject="othr008"))
        session.add(AuditEvent(actor="student", action="identify.ok", subject="nobody9"))


def test_each_stage_counts_the_students_who_reached_it_once(
    sessions: sessionmaker[Session],
) -> None:
    _arrange(sessions)
    rows = {row.intake: row.counts for row in funnels(SimpleNamespace(reads=sessions), now=NOW)}
    assert rows["fall"] == {
        "imported": 7,
        "started": 3,  # twice02 identified twice: one student
        "policies_accepted": 2,
        "contacts_confirmed": 1,
        "activated": 1,
        "locked": 1,
        "expired": 2,  # late004 and gone007: every code they hold is dead and none was used
    }
    assert rows["=cmd"] == {stage: 0 for stage in ORDER} | {"imported": 1, "started": 1}


def test_the_csv_carries_the_same_numbers_formula_safe(sessions: sessionmaker[Session]) -> None:
    _arrange(sessions)
    lines = as_csv(funnels(SimpleNamespace(reads=sessions), now=NOW)).splitlines()
    assert lines[0] == "intake," + ",".join(ORDER)
    assert "'=cmd,1,1,0,0,0,0,0" in lines
    assert "fall,7,3,2,1,1,1,2" in lines
