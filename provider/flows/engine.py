"""The flow engine: an ordered list of steps over server-side state.

A flow lives in the database, keyed by the HMAC of a random id (192 bits) that the
browser holds in a cookie, so a stolen database cannot be replayed as cookies and a
client cannot rewind its own counters. Nothing is stored before the student is
identified: the first step needs no server state, so anonymous visitors cannot fill the
table. A step says only how its submit ended (see `provider.flows.step`); the engine
names what comes next from the flow's ordered list, so no step can be skipped or replayed
out of order, and no caller ever names a step. What a flow collected is a typed object of
the flow's own (`provider.flows.state`), stored as JSON. A flow idles out after `idle` (default 30
minutes) and ends `MAX_LIFETIME` after it began whatever happens; an expired or unknown
flow is replaced by a fresh one and the student is told, never shown an error.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Protocol, Self, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    Table,
    bindparam,
    delete,
    insert,
    lambda_stmt,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.lambdas import StatementLambdaElement

from provider.keyed_hash import KeyedHasher, Purpose
from provider.storage.engine import bind_of
from provider.storage.models import Flow

log = logging.getLogger(__name__)
# The engine runs on every request of every flow: it talks SQLAlchemy Core on a
# connection, not ORM sessions, whose unit of work cost about twice the CPU per
# transaction (issue 17). The rows are the ORM's table, so nothing else changes.
_FLOWS = Flow.__table__


# A statement made per call costs SQLAlchemy its cache key each time (about as much again
# as running it): the writes are lambdas, which SQLAlchemy builds once per code location,
# and the loads are built once per engine (`FlowEngine._load`). Functions, not module
# constants, so that mutation testing reaches them.
def _load_statement() -> Select[Any]:
    return select(_FLOWS).where(_FLOWS.c.id_hash == bindparam("key"))


def _insert() -> StatementLambdaElement:
    return lambda_stmt(lambda: insert(_FLOWS))


def _delete() -> StatementLambdaElement:
    return lambda_stmt(lambda: delete(_FLOWS).where(_FLOWS.c.id_hash == bindparam("key")))


def _touch() -> StatementLambdaElement:
    return lambda_stmt(
        lambda: (
            update(_FLOWS)
            .where(_FLOWS.c.id_hash == bindparam("key"))
            .values(updated_at=bindparam("now"), expires_at=bindparam("expires"))
        )
    )


def _write() -> StatementLambdaElement:
    # No parameter is named like a column: Core would SET a column from a parameter of its
    # name even where `values` does not (a mutation run found `step` written that way).
    # The user never changes after identify (identifying again makes a new flow).
    return lambda_stmt(
        lambda: (
            update(_FLOWS)
            .where(_FLOWS.c.id_hash == bindparam("key"), _FLOWS.c.version == bindparam("seen"))
            .values(
                step=bindparam("to_step"),
                state=bindparam("data"),
                version=_FLOWS.c.version + 1,  # = seen + 1: the WHERE holds it at seen
                updated_at=bindparam("now"),
                expires_at=bindparam("expires"),
            )
        )
    )


FLOW_COOKIE = "umpass_flow"
DEFAULT_IDLE = timedelta(minutes=30)
MAX_LIFETIME = timedelta(hours=2)
TOUCH_EVERY = timedelta(minutes=1)


class FlowData(Protocol):
    """What one flow collects, written as JSON."""

    def to_json(self) -> dict[str, Any]: ...

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Self: ...


D = TypeVar("D", bound=FlowData)


@dataclass
class FlowState(Generic[D]):
    """One flow as the steps see it; `data` holds what the steps collected (None until
    the first step has identified the student and the flow is stored)."""

    flow_id: str | None  # the cookie value (only its HMAC is stored); None before identify
    step: str
    user_id: str | None = None
    data: D | None = None
    version: int = 0
    expires_at: datetime | None = None
    is_new: bool = False
    replaced_expired: bool = False
    # What the flow was identified with still stands (the `stands` check of `load_or_start`).
    stands: bool = True


# What a stored flow was identified with still stands, as a condition on its row (e.g. its
# activation code not revoked), so that loading the flow and checking it are one statement;
# the condition may use the bound parameter "now".
StandsClause = Callable[[Table], ColumnElement[bool]]


class FlowConflict(Exception):
    """Another request changed the flow first (double submit); reload and look again."""


class FlowEngine(Generic[D]):
    def __init__(
        self,
        sessions: sessionmaker[Session],
        hasher: KeyedHasher,
        steps: Sequence[str],
        data_type: type[D],
        *,
        idle: timedelta = DEFAULT_IDLE,
        reads: sessionmaker[Session] | None = None,
    ) -> None:
        self._bind = bind_of(sessions)
        self._read_bind = bind_of(reads or sessions)
        self._loads: dict[StandsClause | None, Select[Any]] = {}
        self._hasher = hasher
        self.steps = tuple(steps)
        self._data_type = data_type
        self.idle = idle

    def _key(self, flow_id: str) -> str:
        return self._hasher.digest(Purpose.FLOW_ID, flow_id)

    def key(self, state: FlowState[D]) -> str:
        """The stored identity of a flow (HMAC of its cookie value), for claims."""
        if state.flow_id is None:
            raise FlowConflict
        return self._key(state.flow_id)

    def position(self, step: str) -> int:
        """1-based position for "Step n of N"."""
        return self.steps.index(step) + 1

    def load_or_start(
        self,
        flow_id: str | None,
        now: datetime | None = None,
        *,
        stands: StandsClause | None = None,
    ) -> FlowState[D]:
        """The live flow for this cookie, or a fresh (not yet stored) one at the first step.

        `stands` checks, in the same statement, that what a stored flow was identified
        with still stands (its answer in `FlowState.stands`): one round trip, not two, on
        every request."""
        now = now or datetime.now(UTC)
        expired = False
        if flow_id and len(flow_id) <= 64:
            with self._read_bind.connect() as conn:
                row = conn.execute(
                    self._load(stands), {"key": self._key(flow_id), "now": now}
                ).first()
            live = row is not None and row.expires_at > now
            if live and row.created_at + MAX_LIFETIME > now and row.step in self.steps:
                data = self._read(row.state)
                if data is not None:
                    state = FlowState(
                        flow_id=flow_id,
                        step=row.step,
                        user_id=row.user_id,
                        data=data,
                        version=row.version,
                        expires_at=row.expires_at,
                    )
                    if stands is not None and state.user_id:
                        state.stands = bool(row.stands)
                    return state
            expired = True  # unknown, expired or unreadable: a cookie was there
        return FlowState(flow_id=None, step=self.steps[0], replaced_expired=expired)

    def _load(self, stands: StandsClause | None) -> Select[Any]:
        """The load statement, with the `stands` column when asked (built once each)."""
        statement = self._loads.get(stands)
        if statement is None:
            statement = _load_statement()
            if stands is not None:
                statement = statement.add_columns(stands(_FLOWS).label("stands"))
            self._loads[stands] = statement
        return statement

    def _read(self, raw: dict[str, Any]) -> D | None:
        """The stored data, or None when this version cannot read it (written by another
        version of the service): the student starts again rather than meets an error."""
        try:
            return self._data_type.from_json(dict(raw))
        except (KeyError, TypeError, ValueError):
            log.warning("stored flow unreadable; starting again", extra={"outcome": "replaced"})
            return None

    def start_identified(
        self, state: FlowState[D], *, user_id: str, data: D, now: datetime | None = None
    ) -> FlowState[D]:
        """Store the flow under a NEW id once the student is identified (an id that existed
        before identification is never trusted after it), dropping the one it replaces,
        at the step after the current one."""
        now = now or datetime.now(UTC)
        step = self.next_step(state.step)
        flow_id = secrets.token_urlsafe(24)
        with self._bind.begin() as conn:
            if state.flow_id:
                conn.execute(_delete(), {"key": self._key(state.flow_id)})
            conn.execute(
                _insert(),
                {
                    "id_hash": self._key(flow_id),
                    "user_id": user_id,
                    "step": step,
                    "state": data.to_json(),
                    "version": 0,
                    "created_at": now,
                    "updated_at": now,
                    "expires_at": now + self.idle,
                },
            )
        return FlowState(
            flow_id=flow_id,
            step=step,
            user_id=user_id,
            data=data,
            expires_at=now + self.idle,
            is_new=True,
        )

    def touch(self, state: FlowState[D], now: datetime | None = None) -> None:
        """Push the idle expiry forward (a page was viewed); at most once a minute."""
        now = now or datetime.now(UTC)
        if state.flow_id is None:
            return
        if state.expires_at is not None and state.expires_at - now > self.idle - TOUCH_EVERY:
            return
        with self._bind.begin() as conn:
            conn.execute(
                _touch(),
                {"key": self._key(state.flow_id), "now": now, "expires": now + self.idle},
            )

    def save(
        self,
        state: FlowState[D],
        now: datetime | None = None,
        *,
        along: Callable[[Connection], None] | None = None,
    ) -> FlowState[D]:
        """Write what the current step collected, staying on it; `along` writes more in the
        same transaction (e.g. the audit event of what the flow now records as done)."""
        return self._write(state, state.step, now, along)

    def advance(
        self,
        state: FlowState[D],
        now: datetime | None = None,
        *,
        along: Callable[[Connection], None] | None = None,
    ) -> FlowState[D]:
        """The current step is done: write and move to the next one in the list (`along`
        as in `save`)."""
        return self._write(state, self.next_step(state.step), now, along)

    def complete(
        self,
        state: FlowState[D],
        now: datetime | None = None,
        *,
        along: Callable[[Connection], None] | None = None,
    ) -> FlowState[D]:
        """The flow reached its goal: write and move to its last step (the end page);
        `along` as in `save`."""
        return self._write(state, self.steps[-1], now, along)

    def back_to(
        self,
        state: FlowState[D],
        step: str,
        now: datetime | None = None,
        *,
        along: Callable[[Connection], None] | None = None,
    ) -> FlowState[D]:
        """An earlier step's result no longer holds: write and move back to it."""
        if self.steps.index(step) >= self.steps.index(state.step):
            raise ValueError(f"{step!r} is not before {state.step!r}")
        return self._write(state, step, now, along)

    def next_step(self, step: str) -> str:
        """The step that follows `step` in the list (the last one stays last)."""
        index = self.steps.index(step)
        return self.steps[min(index + 1, len(self.steps) - 1)]

    def _write(
        self,
        state: FlowState[D],
        step: str,
        now: datetime | None,
        along: Callable[[Connection], None] | None = None,
    ) -> FlowState[D]:
        """Write the state and the step if nobody else changed the flow meanwhile."""
        if state.flow_id is None or state.data is None:
            raise FlowConflict  # nothing stored yet: only identify starts a flow
        now = now or datetime.now(UTC)
        with self._bind.begin() as conn:
            result = conn.execute(
                _write(),
                {
                    "key": self._key(state.flow_id),
                    "seen": state.version,
                    "to_step": step,
                    "data": state.data.to_json(),
                    "now": now,
                    "expires": now + self.idle,
                },
            )
            if result.rowcount != 1:
                raise FlowConflict
            if along is not None:
                along(conn)
        state.step = step
        state.version += 1
        return state

    def finish(self, state: FlowState[D]) -> None:
        """Forget the flow (the "Not you? Start again" of a shared computer)."""
        if state.flow_id:
            with self._bind.begin() as conn:
                conn.execute(_delete(), {"key": self._key(state.flow_id)})


def flow_expired(now: datetime, flow: Any = Flow) -> ColumnElement[bool]:
    """The flows `load_or_start` no longer resumes at `now` (one rule for the engine and for
    `umpass purge`, which deletes them: not every identify on every replica, where parallel
    sweeps of the same rows would queue behind each other on PostgreSQL)."""
    return or_(flow.expires_at <= now, flow.created_at <= now - MAX_LIFETIME)
