"""Audit events: who did what to whom, when. Never a secret, a code or a proofing value.

Students act as "student" (their user ID is the subject); the service as "system";
help-desk staff will act under their own SSO username.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert
from sqlalchemy.orm import Session, sessionmaker

from provider.storage.models import AuditEvent

_INSERT = insert(AuditEvent.__table__)  # built once (see provider/flows/engine.py)

STUDENT = "student"
SYSTEM = "system"
# A typed user ID's identify lock began (counted for the lockout metrics).
LOCK_STARTED = "identify.lock_started"


def record(
    db: Session | Connection, actor: str, action: str, subject: str | None, **detail: Any
) -> None:
    """Add one event to the caller's transaction: an ORM session's (written with its other
    rows, in one batch for many), or a Core connection's (the flow engine's), at once."""
    event = {"at": datetime.now(UTC), "actor": actor, "action": action, "subject": subject}
    if isinstance(db, Session):
        db.add(AuditEvent(**event, detail=detail))
    else:
        db.execute(_INSERT, {**event, "detail": detail})


def record_each(
    conn: Connection, actor: str, action: str, subject: str | None, details: list[dict[str, Any]]
) -> None:
    """One event per detail, in one statement (executemany) on the caller's connection."""
    if details:
        at = datetime.now(UTC)
        event = {"at": at, "actor": actor, "action": action, "subject": subject}
        conn.execute(_INSERT, [{**event, "detail": detail} for detail in details])


def record_now(
    sessions: sessionmaker[Session], actor: str, action: str, subject: str | None, **detail: Any
) -> None:
    """One event in a transaction of its own."""
    with sessions.begin() as session:
        record(session, actor, action, subject, **detail)
