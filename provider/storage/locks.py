"""Serialising transactions on a name, where no row exists to lock yet.

A throttle counts rows and then inserts one: under PostgreSQL's READ COMMITTED two
transactions can both count before either inserts, and both pass. A transaction-scoped
advisory lock on the throttled name makes them take turns; it is released at commit or
rollback, so nothing can leak it. SQLite needs none: every writing transaction there
begins IMMEDIATE, which already admits one writer at a time.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import text
from sqlalchemy.orm import Session


def lock_id(name: str) -> int:
    """A stable signed 64-bit id for `name` (advisory locks are keyed by bigint)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def serialise(session: Session, *names: str) -> None:
    """Hold the lock of each name until the session's transaction ends.

    Taken in one global order (by id), so two transactions that share some names wait
    for each other instead of deadlocking.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    for lock in sorted({lock_id(name) for name in names}):
        session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock})
