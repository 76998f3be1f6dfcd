"""The outbox's events at unit level (SQLite): what a help-desk re-issue writes, that a
payload never carries the code, and that an event rolls back with its transaction."""

from __future__ import annotations

from datetime import date, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from provider import events
from provider.activation_codes import enrol, issue_code
from provider.events import outbox, queue
from provider.helpdesk.student import reissue
from provider.storage.models import OutboxEvent


def _events(sessions) -> list[OutboxEvent]:
    with sessions() as session:
        return list(session.scalars(select(OutboxEvent).order_by(OutboxEvent.id)))


def test_a_reissued_code_writes_an_event_with_the_code_and_never_the_code(sessions, hasher) -> None:
    with sessions.begin() as session:
        enrol(session, hasher, user_id="dc00001", date_of_birth=date(2007, 1, 2), id_number="A123")
        issue_code(session, hasher, "dc00001")
    issued = reissue(SimpleNamespace(sessions=sessions, hasher=hasher), "dc00001", "helper")
    (event,) = _events(sessions)
    assert (event.type, event.user_id) == (events.CODE_REISSUED, "dc00001")
    assert event.payload["changed"] == ["activation_code"]
    assert event.payload["expires_at"] == issued.expires_at.isoformat()
    flat = repr(event.payload)
    assert issued.code not in flat and issued.code.replace("-", "") not in flat


def test_an_event_is_rolled_back_with_its_transaction(sessions) -> None:
    with pytest.raises(RuntimeError), sessions.begin() as session:
        outbox.record(session, events.UNLOCKED, "dc00002", changed=["lockout"])
        session.flush()
        raise RuntimeError("the change failed after the event was written")
    assert _events(sessions) == []


def test_an_unknown_event_type_is_refused(sessions) -> None:
    with pytest.raises(ValueError), sessions.begin() as session:
        outbox.record(session, "student.made_up", "dc00003")


@pytest.mark.parametrize("attempts", [1, 2, 3, 6, 40])
def test_retries_back_off_exponentially_capped_with_jitter(attempts: int) -> None:
    ceiling = min(3600.0, 30.0 * 2 ** (attempts - 1))
    delays = {queue.retry_delay(attempts, 30.0, 3600.0) for _ in range(50)}
    assert all(timedelta(seconds=ceiling / 2) <= d <= timedelta(seconds=ceiling) for d in delays)
    assert len(delays) > 1  # jittered: many events retried after one outage spread out
