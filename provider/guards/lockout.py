"""Consecutive identify failures per typed user ID, and the lock they lead to.

The counter is raised *before* the details are compared, so a request cut short after
the comparison still counts; an attempt the service itself could not answer is released,
and a count full of attempts that never came back ends like a lock. After
`MAX_FAILURES` in a row the ID is locked for `BASE_LOCK`, doubling with each further lock.
Rows exist for IDs that do not exist too: a lock looks the same either way, and so does
the proof-of-work check an ID needs once it has been locked repeatedly (`hot`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, insert, lambda_stmt, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.lambdas import StatementLambdaElement

from provider.keyed_hash import KeyedHasher, Purpose
from provider.storage.engine import bind_of
from provider.storage.models import IdentifyLockout

MAX_FAILURES = 5
BASE_LOCK = timedelta(minutes=15)
MAX_LOCK = timedelta(days=1)
# begin_attempt retries while parallel attempts keep changing the row under it.
_MAX_ROUNDS = 20


# Recovery's wrong-try counter lives in the same table, under this prefix (the help desk
# lists and clears it beside identify's).
RECOVERY_PREFIX = "r/"

# Every identify reads and counts here: SQLAlchemy Core on a connection (see bind_of).
_ROWS = IdentifyLockout.__table__


# Statements as lambdas (see provider/flows/engine.py): SQLAlchemy builds each once per
# code location and caches it; inside functions, so that mutation testing reaches them.
def _row() -> StatementLambdaElement:
    return lambda_stmt(lambda: select(_ROWS).where(_ROWS.c.user_id == bindparam("key")))


def _count() -> StatementLambdaElement:
    return lambda_stmt(
        lambda: (
            update(_ROWS)
            .where(
                _ROWS.c.user_id == bindparam("key"),
                or_(_ROWS.c.locked_until.is_(None), _ROWS.c.locked_until <= bindparam("now")),
                _ROWS.c.failures < MAX_FAILURES,
            )
            .values(failures=_ROWS.c.failures + 1, updated_at=bindparam("now"))
        )
    )


def _create() -> StatementLambdaElement:
    return lambda_stmt(lambda: insert(_ROWS))


def _succeeded() -> StatementLambdaElement:
    return lambda_stmt(
        lambda: (
            update(_ROWS)
            .where(_ROWS.c.user_id == bindparam("key"))
            .values(failures=0, lock_count=0, locked_until=None, updated_at=bindparam("now"))
        )
    )


def lock_key(typed_user_id: str) -> str:
    """The counter's key: the normalised ID, or what was typed (bounded) when malformed.
    Never with a "/": that names recovery's counters (`recovery_key`), which typing into
    identify must not reach."""
    return "".join(typed_user_id.split()).lower().replace("/", "-")[:32] or "-"


def recovery_key(subject: str) -> str:
    """The recovery flow's wrong-try counter for a user ID (beside identify's, in the same
    table)."""
    return f"{RECOVERY_PREFIX}{subject}"[:32]


def recovery_typed_key(hasher: KeyedHasher, canonical: str) -> str:
    """Recovery's counter for what a start typed, as the lookup reads it (`canonical`):
    never for the account found, so a lock tells nothing about which account, if any,
    the typing names. A user ID as it is; an email address by a keyed hash (never kept in
    clear, and longer than the key)."""
    if "@" in canonical:
        return recovery_key("@" + hasher.digest(Purpose.RECOVERY_ACCOUNT, canonical)[:29])
    return recovery_key(canonical)


def begin_attempt(sessions: sessionmaker[Session], key: str, now: datetime) -> datetime | None:
    """Count one attempt. Returns None when it may go on, or when the ID's lock ends.

    The count and the check are one UPDATE, so parallel attempts cannot slip past the
    limit: once `MAX_FAILURES` are counted (even still in flight), the next is refused.
    """
    bind = bind_of(sessions)
    for _ in range(_MAX_ROUNDS):
        with bind.begin() as conn:
            counted = conn.execute(_count(), {"key": key, "now": now}).rowcount
            if counted:
                return None
            row = conn.execute(_row(), {"key": key}).first()
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
                    conn.execute(
                        update(_ROWS)
                        .where(_ROWS.c.user_id == key, _ROWS.c.updated_at == row.updated_at)
                        .values(failures=0, updated_at=now)
                    )
                    continue
                # Neither locked nor full: the row appeared (or was reset) after the
                # UPDATE looked, which PostgreSQL's READ COMMITTED allows. Count again.
                continue
        try:
            with bind.begin() as conn:
                conn.execute(
                    _create(), {"user_id": key, "failures": 1, "lock_count": 0, "updated_at": now}
                )
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


@dataclass(frozen=True)
class Lock:
    """A lock that has just begun: when it ends, and how many in a row it makes."""

    until: datetime
    in_a_row: int


def record_failure(sessions: sessionmaker[Session], key: str, now: datetime) -> Lock | None:
    """The attempt failed: lock the ID once it has failed `MAX_FAILURES` times in a row."""
    with sessions.begin() as session:
        row = session.get(IdentifyLockout, key)
        if row is None or row.failures < MAX_FAILURES:
            return None
        row.locked_until = now + min(BASE_LOCK * (2**row.lock_count), MAX_LOCK)
        row.locked_at = now
        row.lock_count += 1
        row.failures = 0
        return Lock(row.locked_until, row.lock_count)


@dataclass(frozen=True)
class Hot:
    """An ID locked repeatedly: its attempts need a solved challenge from `lock_ends`
    (while locked nothing is compared at all) until `check_ends`."""

    lock_ends: datetime
    check_ends: datetime

    def needs_check(self, now: datetime) -> bool:
        return self.lock_ends <= now < self.check_ends


def hot(
    sessions: sessionmaker[Session],
    key: str,
    now: datetime,
    *,
    after_locks: int,
    window: timedelta,
) -> Hot | None:
    """Whether the typed ID `key` is hot now: locked at least `after_locks` times in a row,
    and its latest lock ended less than `window` ago (or has not ended yet). Read from the
    counter alone, so an ID that does not exist is hot exactly like one that does."""
    if after_locks <= 0:
        return None
    with bind_of(sessions).connect() as conn:
        row = conn.execute(_row(), {"key": key}).first()
    if row is None or row.locked_until is None or row.lock_count < after_locks:
        return None
    check_ends = row.locked_until + window
    return Hot(row.locked_until, check_ends) if now < check_ends else None


def record_success(sessions: sessionmaker[Session], key: str, now: datetime) -> None:
    with bind_of(sessions).begin() as conn:
        record_success_in(conn, key, now)


def record_success_in(db: Session | Connection, key: str, now: datetime) -> None:
    """`record_success` in the caller's transaction (beside the audit of the success)."""
    db.execute(_succeeded(), {"key": key, "now": now})


def clear(sessions: sessionmaker[Session], key: str) -> None:
    """Help desk: lift the lock and forget the failures."""
    with sessions.begin() as session:
        session.execute(
            update(IdentifyLockout)
            .where(IdentifyLockout.user_id == key)
            .values(failures=0, locked_until=None)
        )
