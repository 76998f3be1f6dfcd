"""The delivery rows: made per endpoint, claimed, settled. Every statement the deliver
processes and the admin page run against `outbox_deliveries` is here.

Several `umpass deliver` processes may run at once. A claim is one transaction that picks
due rows with `FOR UPDATE SKIP LOCKED` (PostgreSQL: a row another process is claiming is
skipped, not waited for) and leases them to this process; a row under a live lease is
not due. SQLite has one writer at a time (BEGIN IMMEDIATE), which serialises the claims.

Order per student and endpoint: a row is due only when every earlier event of the same
student at that endpoint is delivered; one in flight, waiting to retry, or dead holds
the later ones back (a dead one until an admin sends it again).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Integer, String, exists, func, literal, or_, select, update
from sqlalchemy.orm import Session, aliased

from provider.storage.engine import insert_unless_present
from provider.storage.models import OutboxDelivery, OutboxEvent, UTCDateTime

PENDING = "pending"
DELIVERED = "delivered"
DEAD = "dead"

_D = OutboxDelivery
_E = OutboxEvent


@dataclass(frozen=True)
class Claimed:
    delivery_id: int
    event_uuid: str
    event_type: str
    payload: dict[str, Any]
    created_at: datetime
    attempts: int  # before this one


def fan_out(conn: Connection, endpoints: Sequence[str], now: datetime) -> int:
    """A pending row for each event that has none yet at each endpoint; how many were made.
    By absence, not by a high-water mark: ids commit out of order, so an event with a lower
    id can appear after a higher one was seen, and must not be skipped."""
    made = 0
    table = _D.__table__
    for name in endpoints:
        missing = select(
            _E.id,
            _E.user_id,
            literal(name, String),
            literal(PENDING, String),
            literal(0, Integer),
            literal(now, UTCDateTime),
        ).where(~exists().where(_D.event_id == _E.id, _D.endpoint == name))
        columns = ["event_id", "user_id", "endpoint", "state", "attempts", "next_attempt_at"]
        insert = insert_unless_present(conn.dialect.name, table, "event_id", "endpoint")
        made += conn.execute(insert.from_select(columns, missing)).rowcount or 0
    return made


def claim(
    session: Session, endpoint: str, owner: str, now: datetime, lease: timedelta, limit: int
) -> list[Claimed]:
    """Lease up to `limit` due rows of `endpoint` to `owner` (at most one per student: the
    order rule holds back a student's later rows while an earlier one is not delivered)."""
    earlier = aliased(_D)
    held_back = exists().where(
        earlier.endpoint == _D.endpoint,
        earlier.user_id == _D.user_id,
        earlier.event_id < _D.event_id,
        earlier.state != DELIVERED,
    )
    due = (
        select(_D.id)
        .where(
            _D.endpoint == endpoint,
            _D.state == PENDING,
            _D.next_attempt_at <= now,
            or_(_D.lease_until.is_(None), _D.lease_until < now),
            ~held_back,
        )
        .order_by(_D.event_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list(session.scalars(due))
    if not ids:
        return []
    # Compare-and-set on the lease as well (re-checked under the row lock): a row leased
    # by another process since it was read is not taken, even if the lock was not held.
    free = or_(_D.lease_until.is_(None), _D.lease_until < now)
    ids = list(
        session.scalars(
            update(_D)
            .where(_D.id.in_(ids), _D.state == PENDING, free)
            .values(lease_until=now + lease, lease_owner=owner)
            .returning(_D.id)
        )
    )
    if not ids:
        return []
    rows = session.execute(
        select(_D.id, _E.uuid, _E.type, _E.payload, _E.created_at, _D.attempts)
        .join(_E, _E.id == _D.event_id)
        .where(_D.id.in_(ids))
        .order_by(_D.event_id)
    )
    return [Claimed(*row) for row in rows]


def delivered(session: Session, delivery_id: int, now: datetime) -> None:
    """Settled, whoever holds the lease now (the receiver has it: that is what counts)."""
    session.execute(
        update(_D)
        .where(_D.id == delivery_id, _D.state == PENDING)
        .values(state=DELIVERED, delivered_at=now, lease_until=None, lease_owner=None)
    )


def failed(
    session: Session,
    claimed: Claimed,
    owner: str,
    now: datetime,
    error: str,
    *,
    max_attempts: int,
    backoff: float,
    backoff_max: float,
) -> str | None:
    """One more failed try: retried later (exponential backoff with jitter), or dead after
    `max_attempts`; the row's state now (PENDING or DEAD). Only while this process still
    holds the lease: None when another took it over (its try is the one that counts)."""
    attempts = claimed.attempts + 1
    dead = attempts >= max_attempts
    result = session.execute(
        update(_D)
        .where(_D.id == claimed.delivery_id, _D.state == PENDING, _D.lease_owner == owner)
        .values(
            attempts=attempts,
            state=DEAD if dead else PENDING,
            next_attempt_at=now + retry_delay(attempts, backoff, backoff_max),
            lease_until=None,
            lease_owner=None,
            last_error=error[:255],
        )
    )
    if not result.rowcount:
        return None
    return DEAD if dead else PENDING


def retry_delay(attempts: int, backoff: float, backoff_max: float) -> timedelta:
    """`backoff` doubled per failed try, capped, then jittered down by up to half so that
    retries of many events (an endpoint back after an outage) spread out."""
    ceiling = min(backoff_max, backoff * 2 ** min(attempts - 1, 30))
    return timedelta(seconds=ceiling * random.uniform(0.5, 1.0))  # noqa: S311 (not a secret)


@dataclass(frozen=True)
class DeadLetter:
    delivery_id: int
    endpoint: str
    event_uuid: str
    event_type: str
    user_id: str
    created_at: datetime
    attempts: int
    last_error: str | None


def dead_letters(db: Session, limit: int = 200) -> list[DeadLetter]:
    rows = db.execute(
        select(
            _D.id,
            _D.endpoint,
            _E.uuid,
            _E.type,
            _D.user_id,
            _E.created_at,
            _D.attempts,
            _D.last_error,
        )
        .join(_E, _E.id == _D.event_id)
        .where(_D.state == DEAD)
        .order_by(_D.event_id)
        .limit(limit)
    )
    return [DeadLetter(*row) for row in rows]


def send_again(db: Session, delivery_id: int, now: datetime) -> str | None:
    """A dead letter back in the queue with a fresh count of tries; its student's user ID,
    or None when it was not dead (sent again already, or no such row)."""
    return db.scalar(
        update(_D)
        .where(_D.id == delivery_id, _D.state == DEAD)
        .values(state=PENDING, attempts=0, next_attempt_at=now, last_error=None)
        .returning(_D.user_id)
    )


def counts(db: Session | Connection) -> list[tuple[str, str, int]]:
    """(endpoint, state, rows): for the backlog gauges."""
    rows = db.execute(select(_D.endpoint, _D.state, func.count()).group_by(_D.endpoint, _D.state))
    return [(e, s, int(n)) for e, s, n in rows]
