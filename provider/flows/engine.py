"""The flow engine: an ordered list of steps over server-side state.

A flow lives in the database, keyed by the HMAC of a random id (192 bits) that the
browser holds in a cookie, so a stolen database cannot be replayed as cookies and a
client cannot rewind its own counters. Nothing is stored before the student is
identified: the first step needs no server state, so anonymous visitors cannot fill the
table. Steps only say "done" or "not yet"; the engine decides what comes next, so no
step can be skipped or replayed out of order. A flow idles out after `idle` (default 30
minutes) and ends `MAX_LIFETIME` after it began whatever happens; an expired or unknown
flow is replaced by a fresh one and the student is told, never shown an error.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, or_, update
from sqlalchemy.orm import Session, sessionmaker

from provider.keyed_hash import KeyedHasher, Purpose
from provider.storage.models import Flow

FLOW_COOKIE = "umpass_flow"
DEFAULT_IDLE = timedelta(minutes=30)
MAX_LIFETIME = timedelta(hours=2)
TOUCH_EVERY = timedelta(minutes=1)


@dataclass
class FlowState:
    """One flow as the steps see it; `data` holds what steps collected so far."""

    flow_id: str | None  # the cookie value (only its HMAC is stored); None before identify
    step: str
    user_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    version: int = 0
    expires_at: datetime | None = None
    is_new: bool = False
    replaced_expired: bool = False


class FlowConflict(Exception):
    """Another request changed the flow first (double submit); reload and look again."""


class FlowEngine:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        hasher: KeyedHasher,
        steps: Sequence[str],
        *,
        idle: timedelta = DEFAULT_IDLE,
        reads: sessionmaker[Session] | None = None,
    ) -> None:
        self._sessions = sessions
        self._reads = reads or sessions
        self._hasher = hasher
        self.steps = tuple(steps)
        self.idle = idle

    def _key(self, flow_id: str) -> str:
        return self._hasher.digest(Purpose.FLOW_ID, flow_id)

    def key(self, state: FlowState) -> str:
        """The stored identity of a flow (HMAC of its cookie value), for claims."""
        if state.flow_id is None:
            raise FlowConflict
        return self._key(state.flow_id)

    def position(self, step: str) -> int:
        """1-based position for "Step n of N"."""
        return self.steps.index(step) + 1

    def load_or_start(self, flow_id: str | None, now: datetime | None = None) -> FlowState:
        """The live flow for this cookie, or a fresh (not yet stored) one at the first step."""
        now = now or datetime.now(UTC)
        expired = False
        if flow_id and len(flow_id) <= 64:
            with self._reads() as session:
                row = session.get(Flow, self._key(flow_id))
                if row is not None and row.expires_at > now and row.created_at + MAX_LIFETIME > now:
                    return FlowState(
                        flow_id=flow_id,
                        step=row.step,
                        user_id=row.user_id,
                        data=dict(row.state),
                        version=row.version,
                        expires_at=row.expires_at,
                    )
                expired = True  # unknown or expired: a cookie was there
        return FlowState(flow_id=None, step=self.steps[0], replaced_expired=expired)

    def start_identified(
        self, state: FlowState, *, user_id: str, step: str, now: datetime | None = None
    ) -> FlowState:
        """Store the flow under a NEW id once the student is identified (an id that existed
        before identification is never trusted after it), dropping the one it replaces."""
        now = now or datetime.now(UTC)
        flow_id = secrets.token_urlsafe(24)
        with self._sessions.begin() as session:
            if state.flow_id:
                session.execute(delete(Flow).where(Flow.id_hash == self._key(state.flow_id)))
            session.add(
                Flow(
                    id_hash=self._key(flow_id),
                    user_id=user_id,
                    step=step,
                    state=state.data,
                    version=0,
                    created_at=now,
                    updated_at=now,
                    expires_at=now + self.idle,
                )
            )
        return FlowState(
            flow_id=flow_id,
            step=step,
            user_id=user_id,
            data=state.data,
            expires_at=now + self.idle,
            is_new=True,
        )

    def touch(self, state: FlowState, now: datetime | None = None) -> None:
        """Push the idle expiry forward (a page was viewed); at most once a minute."""
        now = now or datetime.now(UTC)
        if state.flow_id is None:
            return
        if state.expires_at is not None and state.expires_at - now > self.idle - TOUCH_EVERY:
            return
        with self._sessions.begin() as session:
            session.execute(
                update(Flow)
                .where(Flow.id_hash == self._key(state.flow_id))
                .values(updated_at=now, expires_at=now + self.idle)
            )

    def save(
        self, state: FlowState, *, step: str | None = None, now: datetime | None = None
    ) -> FlowState:
        """Write the state (and move to `step`) if nobody else changed the flow meanwhile."""
        if state.flow_id is None:
            raise FlowConflict  # nothing stored yet: only identify starts a flow
        now = now or datetime.now(UTC)
        new_step = step or state.step
        with self._sessions.begin() as session:
            result = session.execute(
                update(Flow)
                .where(Flow.id_hash == self._key(state.flow_id), Flow.version == state.version)
                .values(
                    step=new_step,
                    user_id=state.user_id,
                    state=state.data,
                    version=state.version + 1,
                    updated_at=now,
                    expires_at=now + self.idle,
                )
            )
            if result.rowcount != 1:
                raise FlowConflict
        state.step = new_step
        state.version += 1
        return state

    def advance(self, state: FlowState, now: datetime | None = None) -> FlowState:
        """Move past the current step."""
        index = self.steps.index(state.step)
        return self.save(state, step=self.steps[min(index + 1, len(self.steps) - 1)], now=now)

    def finish(self, state: FlowState) -> None:
        """Forget the flow (the "Not you? Start again" of a shared computer)."""
        if state.flow_id:
            with self._sessions.begin() as session:
                session.execute(delete(Flow).where(Flow.id_hash == self._key(state.flow_id)))


def flow_expired(now: datetime, flow: Any = Flow) -> ColumnElement[bool]:
    """The flows `load_or_start` no longer resumes at `now` (one rule for the engine and for
    `umpass purge`, which deletes them: not every identify on every replica, where parallel
    sweeps of the same rows would queue behind each other on PostgreSQL)."""
    return or_(flow.expires_at <= now, flow.created_at <= now - MAX_LIFETIME)
