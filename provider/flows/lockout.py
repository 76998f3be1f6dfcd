"""Consecutive identify failures per typed user ID, and the lock they lead to.

The counter is raised *before* the details are compared, so a request cut short after
the comparison still counts; an attempt the service itself could not answer is released,
and a count full of attempts that never came back ends like a lock. After
`MAX_FAILURES` in a row the ID is locked for `BASE_LOCK`, doubling with each further lock.
Rows exist for IDs that do not exist too: a lock looks the same either way.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from provider.storage.models import IdentifyLockout

MAX_FAILURES = 5
BASE_LOCK = timedelta(minutes=15)
MAX_LOCK = timedelta(days=1)
# begin_attempt retries while parallel attempts keep changing the row under it.
_MAX_ROUNDS = 20


def lock_key(typed_user_id: str) -> str:
    """The counter's key: the normalised ID, or what was typed (bounded) when malformed."""
    return "".join(typed_user_id.split()).lower()[:32] or "-"


def begin_attempt(sessions: sessionmaker[Session], key: str, now: datetime) -> datetime | None:
    """Count one attempt. Returns None when it may go on, or when the ID's lock ends.

    The count and the check are one UPDATE, so parallel attempts cannot slip past the
    limit: once `MAX_FAILURES` are counted (even still in flight), the next is refused.
    """
    for _ in range(_MAX_ROUNDS):
        with sessions.begin() as session:
            counted = session.execute(
                update(IdentifyLockout)
                .where(
                    IdentifyLockout.user_id == key,
                    or_(
                        IdentifyLockout.locked_until.is_(None),
                        IdentifyLockout.locked_until <= now,
                    ),
                    IdentifyLockout.failures < MAX_FAILURES,
                )
                .values(failures=IdentifyLockout.failures + 1, updated_at=now)
            ).rowcount
            if counted:
                return None
            row = session.get(IdentifyLockout, key)
            if row is not None:
                if row.locked_until is not None and row.locked_until > now:
                    return row.locked_until
                if row.failures >= MAX_FAILURES:
                    # Full of attempts that never came back (still in flight, or cut
                    # short by a crash): a lock from the last of them, which ends.
                    ends = row.updated_at + BASE_LOCK
                    if ends > now:
                        return ends
                    # Unless a parallel attempt reset it first (updated_at moved on). An
                    # earlier lock, over by now, must not stop the reset, or the count
                    # would stay full for good. The reset touches no lock: one that a
                    # parallel failure sets meanwhile holds all the same.
                    session.execute(
                        update(IdentifyLockout)
                        .where(
                            IdentifyLockout.user_id == key,
                            IdentifyLockout.updated_at == row.updated_at,
                        )
                        .values(failures=0, updated_at=now)
                    )
                    continue
                # Neither locked nor full: the row appeared (or was reset) after the
                # UPDATE looked, which PostgreSQL's READ COMMITTED allows. Count again.
                continue
        try:
            with sessions.begin() as session:
                session.add(IdentifyLockout(user_id=key, failures=1, lock_count=0, updated_at=now))
        except IntegrityError:  # a parallel first attempt created it: count on that row
            continue
        return None
    return now + BASE_LOCK  # never seen: fail closed rather than count nothing


def release_attempt(sessions: sessionmaker[Session], key: str) -> None:
    """The attempt ended without an answer (the service failed, e.g. Keycloak down): it
    does not count against the student."""
    with sessions.begin() as session:
        session.execute(
            update(IdentifyLockout)
            .where(IdentifyLockout.user_id == key, IdentifyLockout.failures > 0)
            .values(failures=IdentifyLockout.failures - 1)
        )


def record_failure(sessions: sessionmaker[Session], key: str, now: datetime) -> None:
    """The attempt failed: lock the ID once it has failed `MAX_FAILURES` times in a row."""
    with sessions.begin() as session:
        row = session.get(IdentifyLockout, key)
        if row is None or row.failures < MAX_FAILURES:
            return
        row.locked_until = now + min(BASE_LOCK * (2**row.lock_count), MAX_LOCK)
        row.lock_count += 1
        row.failures = 0


def record_success(sessions: sessionmaker[Session], key: str, now: datetime) -> None:
    with sessions.begin() as session:
        session.execute(
            update(IdentifyLockout)
            .where(IdentifyLockout.user_id == key)
            .values(failures=0, lock_count=0, locked_until=None, updated_at=now)
        )


def clear(sessions: sessionmaker[Session], key: str) -> None:
    """Help desk: lift the lock and forget the failures."""
    with sessions.begin() as session:
        session.execute(
            update(IdentifyLockout)
            .where(IdentifyLockout.user_id == key)
            .values(failures=0, locked_until=None)
        )
