"""The console's list of locks: identify's and recovery's in one table, told apart and
counted apart, so neither door's figures (nor the mass-lockout banner) take in the other's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from sqlalchemy.orm import Session, sessionmaker

from provider.guards.lockout import recovery_key
from provider.helpdesk.lockouts import NOT_ENROLLED, overview
from provider.storage.models import IdentifyLockout, Student

NOW = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)


def _locks(sessions: sessionmaker[Session], *keys: str, ago: timedelta) -> None:
    with sessions.begin() as session:
        for key in keys:
            session.add(
                IdentifyLockout(
                    user_id=key,
                    failures=0,
                    lock_count=1,
                    locked_at=NOW - ago,
                    locked_until=NOW - ago + timedelta(days=1),
                    updated_at=NOW - ago,
                )
            )


def _svc(sessions: sessionmaker[Session], threshold: int) -> SimpleNamespace:
    settings = SimpleNamespace(user_id_length=7, mass_lockout_threshold=threshold)
    return SimpleNamespace(reads=sessions, settings=settings)


def test_recovery_locks_are_told_apart_and_counted_apart(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        session.add(Student(user_id="dc12345", dob_hash="d", id_last4_hash="i", intake="fall"))
    _locks(sessions, "zz99999", ago=timedelta(hours=3))
    _locks(sessions, "dc12345", ago=timedelta(hours=2))
    _locks(sessions, recovery_key("dc12345"), ago=timedelta(minutes=5))
    _locks(sessions, recovery_key("someone@example.edu"), ago=timedelta(minutes=4))

    view = overview(_svc(sessions, threshold=1), now=NOW)

    shown = [(row.door, row.user_id, row.enrolled) for row in view.rows]
    assert shown == [
        ("recovery", None, False),  # typing that is not a user ID: never spelled out
        ("recovery", "dc12345", True),  # the user ID, without the counter's prefix
        ("identify", "dc12345", True),
        ("identify", "zz99999", False),
    ]
    assert (view.locked_now, view.locked_recently) == (2, 0)
    assert view.by_intake == {"fall": 1, NOT_ENROLLED: 1}
    assert (view.recovery_locked_now, view.recovery_locked_recently) == (2, 2)
    assert not view.mass_lockout  # identify's banner: recovery's locks are not its own
    assert view.recovery_mass_lockout  # 2 recovery locks within the hour, more than 1
