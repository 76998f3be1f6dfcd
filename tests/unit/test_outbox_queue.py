"""The delivery queue's rules at unit level (SQLite, no HTTP): an event committed late with
a lower id is still sent; a deliver process that died mid-send loses its lease and another
takes the row over; a lease still live is never taken."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker

from provider import events
from provider.events import outbox, queue
from provider.storage.engine import bind_of
from provider.storage.models import OutboxDelivery, OutboxEvent

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)


def _fan_out(sessions: sessionmaker[Session], now: datetime = T0) -> int:
    with bind_of(sessions).begin() as conn:
        return queue.fan_out(conn, ["lms"], now)


def _claim(sessions: sessionmaker[Session], owner: str, now: datetime = T0) -> list[str]:
    with sessions.begin() as session:
        return [c.event_uuid for c in queue.claim(session, "lms", owner, now, LEASE, 20)]


def test_an_event_committed_late_with_a_lower_id_is_still_sent(sessions) -> None:
    with sessions.begin() as session:
        seen = outbox.record(session, events.ACTIVATED, "dc00001", at=T0)
    assert _fan_out(sessions) == 1
    with sessions.begin() as session:
        delivered = queue.claim(session, "lms", "a", T0, LEASE, 20)
        queue.delivered(session, delivered[0].delivery_id, T0)
    # A lower id than the one delivered, as a transaction that took its id first and
    # committed last holds on PostgreSQL.
    late = str(uuid.uuid4())
    with sessions.begin() as session:
        session.execute(
            insert(OutboxEvent).values(
                id=0, uuid=late, type=events.UNLOCKED, user_id="dc00002", payload={}, created_at=T0
            )
        )
    assert _fan_out(sessions) == 1
    assert _claim(sessions, "a") == [late]
    assert seen != late


def test_a_lease_is_kept_while_live_and_taken_over_once_it_ran_out(sessions) -> None:
    with sessions.begin() as session:
        event = outbox.record(session, events.ACTIVATED, "dc00003", at=T0)
    _fan_out(sessions)
    assert _claim(sessions, "a") == [event]  # process a dies before settling it
    assert _claim(sessions, "b", T0 + LEASE - timedelta(seconds=1)) == []
    assert _claim(sessions, "b", T0 + LEASE + timedelta(seconds=1)) == [event]
    # a's late report of a failure no longer counts: b holds it now.
    with sessions.begin() as session:
        claimed = session.scalars(select(OutboxDelivery)).one()
        stale = queue.Claimed(claimed.id, event, events.ACTIVATED, {}, T0, 0)
        late = queue.failed(
            session, stale, "a", T0, "late", max_attempts=1, backoff=0, backoff_max=0
        )
        assert late is None
    with sessions() as session:
        row = session.scalars(select(OutboxDelivery)).one()
        assert (row.state, row.lease_owner, row.attempts) == ("pending", "b", 0)
