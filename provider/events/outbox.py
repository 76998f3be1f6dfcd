"""Writing an event: one INSERT in the caller's transaction (see the package doc)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert
from sqlalchemy.orm import Session

from provider.events import TYPES
from provider.storage.models import OutboxEvent

_INSERT = insert(OutboxEvent.__table__)  # built once (see provider/flows/engine.py)


def record(
    db: Session | Connection,
    event_type: str,
    user_id: str,
    *,
    at: datetime | None = None,
    **changed: Any,
) -> str:
    """Add one event to the caller's transaction (an ORM session's or a Core connection's);
    returns its id, the receivers' idempotency key. `changed` says what changed (JSON
    values, never a secret)."""
    if event_type not in TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    at = at or datetime.now(UTC)
    event_id = str(uuid.uuid4())
    payload = {"user_id": user_id, "at": at.isoformat(), **changed}
    row = {
        "uuid": event_id,
        "type": event_type,
        "user_id": user_id,
        "payload": payload,
        "created_at": at,
    }
    if isinstance(db, Session):
        db.add(OutboxEvent(**row))
    else:
        db.execute(_INSERT, row)
    return event_id
