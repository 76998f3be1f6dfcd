"""`umpass purge`: delete what the service no longer reads, keep what it still does.

Each kind of row has one rule, stated against the code that reads it:

* flows: past their idle expiry or `MAX_LIFETIME` (the engine will never resume them);
* contact verifications: their flow is gone or purgeable (a code proves nothing outside it);
* contact sends: older than the send throttles look back (a day: the per-student cap);
* OIDC codes: expired, and every ID token that carries their nonce expired too;
* OIDC access tokens: expired (a replayed code revokes tokens by the code's hash, so the
  code row is not needed for that);
* identify lockouts: not locked, and untouched for the reset period (the lock doubling
  counts past locks; a row with nothing counted goes at once);
* redeemed proof-of-work challenges: expired (an expired challenge is refused anyway);
* policy reviews (the policy gate's tickets): expired (Keycloak refuses its ticket by then);
* activation codes: only a code that stopped working (revoked or expired, never used)
  longer ago than the code retention *and* has a newer code of the same student; the
  newest code and every used code stay, so the funnel and the help desk read the same;
* audit events: older than the audit retention (0: kept forever);
* outbox events (with their delivery rows): older than the event retention and delivered
  to every endpoint that has a row for it; one no endpoint ever took goes only with the
  audit log (`_event_gone` argues both).

The short-lived kinds get `grace` on top, for clocks that differ between replicas.
Rows go in batches of `batch_size`, each its own short transaction, so no lock is held
for long. A row a live request is changing (a flow touched, a lockout counted) is never
deleted on a stale read: on PostgreSQL the batch skips rows another transaction holds
(SKIP LOCKED), and the delete repeats the rule, which PostgreSQL re-checks on a row that
changed meanwhile; SQLite runs one writer at a time anyway. On PostgreSQL one replica
purges at a time (an advisory lock); the others return at once. Students (proofing
hashes) are never purged here, nor the daily send counts (`send_days`: one row of
numbers a day, no personal data; the refusal counters in /metrics add them up).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, and_, delete, func, or_, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import aliased

from provider.config import LONGEST_STUDENT_WINDOW_SECONDS, ConfigError
from provider.events import queue as events_queue
from provider.flows.engine import flow_expired
from provider.guards import verification
from provider.oidc.server import ID_TOKEN_SECONDS, TOKEN_LIFETIME
from provider.storage.engine import read_only
from provider.storage.models import (
    ActivationCode,
    AuditEvent,
    Base,
    ContactSend,
    ContactVerification,
    Flow,
    IdentifyLockout,
    OidcAccessToken,
    OidcAuthorizationCode,
    OutboxDelivery,
    OutboxEvent,
    PolicyReview,
    StaffSession,
    UsedChallenge,
)

# pg_try_advisory_lock key: "umpurge" in ASCII, so it is recognisable in pg_locks.
ADVISORY_LOCK_KEY = 0x756D7075726765


class PurgeBusy(Exception):
    """Another purge holds the lock (PostgreSQL): this one has nothing to do."""


@dataclass(frozen=True)
class Retention:
    """How long rows stay once the code no longer needs them (see `.env.example`)."""

    # Two years: a dispute about an activation (or a complaint to the privacy office)
    # can come a full academic year later and take months to settle.
    audit_days: int = 730
    # A superseded code stays visible to the help desk for a semester after it stopped
    # working ("I used the code in my first letter"); 0 keeps codes forever.
    code_days: int = 180
    # A lockout row forgets its doubling history after this long untouched: longer than
    # any lock (1 day at most), so a guesser must go quiet for a month to get 15 min back.
    lockout_reset_days: int = 30
    # A delivered event stays this long after it was written (what was sent, for an admin
    # looking into a receiver's "we never got it"); 0 keeps events forever.
    event_days: int = 30
    # Clock difference between replicas that a just-expired row is kept for.
    grace: timedelta = timedelta(minutes=15)
    batch_size: int = 1000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Retention:
        env = os.environ if env is None else env
        return cls(
            audit_days=_whole(env, "UMPASS_AUDIT_RETENTION_DAYS", cls.audit_days, minimum=0),
            code_days=_whole(env, "UMPASS_CODE_RETENTION_DAYS", cls.code_days, minimum=0),
            lockout_reset_days=_whole(
                env, "UMPASS_LOCKOUT_RESET_DAYS", cls.lockout_reset_days, minimum=1
            ),
            event_days=_whole(env, "UMPASS_EVENT_RETENTION_DAYS", cls.event_days, minimum=0),
            grace=timedelta(
                minutes=_whole(env, "UMPASS_PURGE_GRACE_MINUTES", _minutes(cls.grace), minimum=0)
            ),
            batch_size=_whole(env, "UMPASS_PURGE_BATCH", cls.batch_size, minimum=1),
        )


def _whole(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < minimum:
        raise ConfigError(f"{name}={raw!r} must be a whole number of at least {minimum}")
    return int(raw)


Rule = Callable[[datetime, Retention], ColumnElement[bool] | None]
# How a kind's due rows are deleted, in batches: (connection, kind, rule, batch size) ->
# rows deleted. `_delete` unless the kind's rows take others with them.
Deleter = Callable[[Connection, "Kind", ColumnElement[bool], int], int]


@dataclass(frozen=True)
class Kind:
    name: str
    model: type[Base]
    key: str  # the primary key column's attribute
    rule: Rule  # None: keep everything of this kind
    describe: Callable[[Retention], str]
    delete: Deleter | None = None


def _flow_gone(now: datetime, r: Retention, flow: Any = Flow) -> ColumnElement[bool]:
    return flow_expired(now - r.grace, flow)  # the engine's own rule, a grace later


def _verification_gone(now: datetime, r: Retention) -> ColumnElement[bool]:
    # Keyed by its flow's key and read only through that flow; "or purgeable" makes the
    # dry run's count the real one.
    live = aliased(Flow)
    return ~(
        select(live.id_hash)
        .where(live.id_hash == ContactVerification.flow_key, ~_flow_gone(now, r, live))
        .exists()
    )


# The furthest back any send throttle (per contact, per flow, the resend gap, per student:
# its windows are at most a day, which the configuration enforces) looks.
SENDS_COUNTED = max(
    verification.HOUR,
    verification.CONTACT_GAP,
    timedelta(seconds=LONGEST_STUDENT_WINDOW_SECONDS),
)


def _send_gone(now: datetime, r: Retention) -> ColumnElement[bool]:
    return ContactSend.at <= now - SENDS_COUNTED - r.grace


# `exists_nonce` refuses a nonce it has seen: keep it while an ID token carrying it lives.
NONCE_KEPT = max(timedelta(seconds=ID_TOKEN_SECONDS), TOKEN_LIFETIME)


def _oidc_code_gone(now: datetime, r: Retention) -> ColumnElement[bool]:
    return OidcAuthorizationCode.expires_at <= now - NONCE_KEPT - r.grace


def _oidc_token_gone(now: datetime, r: Retention) -> ColumnElement[bool]:
    return OidcAccessToken.expires_at <= now - r.grace


def _staff_session_gone(now: datetime, r: Retention) -> ColumnElement[bool]:
    return StaffSession.expires_at <= now - r.grace


def _challenge_gone(now: datetime, r: Retention) -> ColumnElement[bool]:
    return UsedChallenge.expires_at <= now - r.grace


def _review_gone(now: datetime, r: Retention) -> ColumnElement[bool]:
    return PolicyReview.expires_at <= now - r.grace


def _lockout_gone(now: datetime, r: Retention) -> ColumnElement[bool]:
    row = IdentifyLockout
    unlocked = or_(row.locked_until.is_(None), row.locked_until <= now)
    blank = and_(row.failures == 0, row.lock_count == 0)  # the same as no row at all
    return and_(unlocked, or_(blank, row.updated_at <= now - timedelta(days=r.lockout_reset_days)))


def _code_gone(now: datetime, r: Retention) -> ColumnElement[bool] | None:
    if r.code_days == 0:
        return None
    cutoff = now - timedelta(days=r.code_days)
    newer = aliased(ActivationCode)
    superseded = (
        select(newer.id)
        .where(newer.user_id == ActivationCode.user_id, newer.id > ActivationCode.id)
        .exists()
    )
    stopped = or_(ActivationCode.revoked_at <= cutoff, ActivationCode.expires_at <= cutoff)
    return and_(ActivationCode.used_at.is_(None), stopped, superseded)


def _audit_gone(now: datetime, r: Retention) -> ColumnElement[bool] | None:
    return None if r.audit_days == 0 else AuditEvent.at <= now - timedelta(days=r.audit_days)


def _event_gone(now: datetime, r: Retention) -> ColumnElement[bool] | None:
    """An outbox event nothing will send again, and old enough that nobody asks about it.

    - Delivered everywhere: it has delivery rows and every one is delivered (a terminal
      state: nothing sets a delivered row back). Pending, leased, waiting to retry or dead
      rows keep it: it is still being sent, or an admin may send it again.
    - No delivery row at all: the purge cannot tell from here whether it will ever be
      sent. It runs with the web service's environment, which need not hold the endpoints
      of `umpass deliver`; a deliver process down for a while must find every event when
      it is back; and an endpoint added later gets every event kept so far. So it is not
      deleted at the event retention. But every deliver round gives each event a row at
      each endpoint it serves (`queue.fan_out`, by absence), so an event with none after
      the audit retention (two years by default) was never sent because nothing was
      configured to send it: it goes then, with the audit log's record of the same change
      (a site without webhooks keeps no personal data longer than its audit). With the
      audit kept forever, so is such an event.

    An endpoint taken out of the configuration leaves its rows pending: those events stay
    until an admin deals with them (a dead letter can be seen; a pending row of a gone
    endpoint is counted in the backlog gauge).
    """
    if r.event_days == 0:
        return None
    event, delivery = OutboxEvent, OutboxDelivery
    rows = select(delivery.id).where(delivery.event_id == event.id)
    unsent = rows.where(delivery.state != events_queue.DELIVERED).exists()
    sent = rows.exists()
    if r.audit_days:
        never_taken = event.created_at <= now - timedelta(days=max(r.audit_days, r.event_days))
        sent = or_(sent, never_taken)
    return and_(event.created_at <= now - timedelta(days=r.event_days), ~unsent, sent)


def _delete_events(conn: Connection, kind: Kind, rule: ColumnElement[bool], batch_size: int) -> int:
    """An event and its delivery rows go in one transaction (the rows point at it), a
    batch of events at a time.

    On PostgreSQL the batch's events are locked (FOR UPDATE, SKIP LOCKED): `umpass
    deliver` adding a row for one (a new endpoint's first round) holds its key share, so
    the event is skipped; one that comes after the lock waits for this transaction and then
    fails on the foreign key, its round retried without the event. The rule is asked
    again by each DELETE (a row committed after the batch was read, before its lock, is
    seen by them): an event that has a row not delivered keeps every row, delivered ones
    included, for without its delivered row an endpoint would be given a new one and sent
    the event again; the event goes only once no row of it is left.
    """
    event, delivery, other = OutboxEvent, OutboxDelivery, aliased(OutboxDelivery)
    picked = select(event.id).where(rule).order_by(event.id).limit(batch_size)
    if conn.dialect.name == "postgresql":
        picked = picked.with_for_update(skip_locked=True)
    sending = (
        select(other.id)
        .where(other.event_id == delivery.event_id, other.state != events_queue.DELIVERED)
        .exists()
    )
    left = select(delivery.id).where(delivery.event_id == event.id).exists()
    total = 0
    while True:
        with conn.begin():
            ids = list(conn.scalars(picked))
            if ids:
                conn.execute(delete(delivery).where(delivery.event_id.in_(ids), ~sending))
                total += int(
                    conn.execute(delete(event).where(event.id.in_(ids), ~left)).rowcount or 0
                )
        if len(ids) < batch_size:
            return total


def _minutes(span: timedelta) -> int:
    return int(span.total_seconds() // 60)


def _grace(r: Retention) -> str:
    return f"{_minutes(r.grace)} min"


KINDS: tuple[Kind, ...] = (
    Kind("flows", Flow, "id_hash", _flow_gone, lambda r: f"expired + {_grace(r)}"),
    Kind(
        "contact verifications",
        ContactVerification,
        "id",
        _verification_gone,
        lambda r: "their flow gone",
    ),
    Kind(
        "contact sends",
        ContactSend,
        "id",
        _send_gone,
        lambda r: f"{_minutes(SENDS_COUNTED)} min + {_grace(r)}",
    ),
    Kind(
        "OIDC codes",
        OidcAuthorizationCode,
        "code_hash",
        _oidc_code_gone,
        lambda r: f"expired + {_minutes(NONCE_KEPT)} min + {_grace(r)}",
    ),
    Kind(
        "OIDC access tokens",
        OidcAccessToken,
        "token_hash",
        _oidc_token_gone,
        lambda r: f"expired + {_grace(r)}",
    ),
    Kind(
        "staff sessions",
        StaffSession,
        "id_hash",
        _staff_session_gone,
        lambda r: f"expired + {_grace(r)}",
    ),
    Kind(
        "identify lockouts",
        IdentifyLockout,
        "user_id",
        _lockout_gone,
        lambda r: f"idle {r.lockout_reset_days} d",
    ),
    Kind(
        "used challenges",
        UsedChallenge,
        "nonce",
        _challenge_gone,
        lambda r: f"expired + {_grace(r)}",
    ),
    Kind(
        "policy reviews",
        PolicyReview,
        "ticket_id",
        _review_gone,
        lambda r: f"expired + {_grace(r)}",
    ),
    Kind(
        "activation codes",
        ActivationCode,
        "id",
        _code_gone,
        lambda r: f"superseded, {r.code_days} d" if r.code_days else "forever",
    ),
    Kind(
        "audit events",
        AuditEvent,
        "id",
        _audit_gone,
        lambda r: f"{r.audit_days} d" if r.audit_days else "forever",
    ),
    Kind(
        "outbox events",
        OutboxEvent,
        "id",
        _event_gone,
        lambda r: f"delivered, {r.event_days} d" if r.event_days else "forever",
        delete=_delete_events,
    ),
)


@dataclass
class PurgeReport:
    dry_run: bool
    counts: dict[str, int] = field(default_factory=dict)
    rules: dict[str, str] = field(default_factory=dict)


def purge(
    engine: Engine,
    retention: Retention,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
) -> PurgeReport:
    """Delete (or, dry, count) every row past its rule; raises `PurgeBusy` on PostgreSQL
    when another purge runs."""
    now = now or datetime.now(UTC)
    report = PurgeReport(dry_run, rules={k.name: k.describe(retention) for k in KINDS})
    if dry_run:
        with read_only(engine).connect() as conn:
            for kind in KINDS:
                rule = kind.rule(now, retention)
                report.counts[kind.name] = (
                    0
                    if rule is None
                    else int(conn.scalar(select(func.count()).select_from(kind.model).where(rule)))
                )
        return report
    with engine.connect() as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            _lock(conn)
        try:
            for kind in KINDS:
                rule = kind.rule(now, retention)
                deleter = kind.delete or _delete
                report.counts[kind.name] = (
                    0 if rule is None else deleter(conn, kind, rule, retention.batch_size)
                )
        finally:
            if postgres:
                _unlock(conn)
    return report


def _lock(conn: Connection) -> None:
    # Session-level, so it spans the batches' transactions; unlocked in `purge`, and
    # released by the server if this process dies.
    got = conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
    conn.commit()
    if not got:
        raise PurgeBusy


def _unlock(conn: Connection) -> None:
    # A database that went away took the lock with it; its error is the one to report.
    with contextlib.suppress(SQLAlchemyError):
        conn.rollback()
        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK_KEY})
        conn.commit()


def _delete(conn: Connection, kind: Kind, rule: ColumnElement[bool], batch_size: int) -> int:
    key = getattr(kind.model, kind.key)
    picked = select(key).where(rule).limit(batch_size).correlate(None)
    if conn.dialect.name == "postgresql":
        # A row a live request holds is left for the next run, not waited for.
        picked = picked.with_for_update(skip_locked=True)
    statement = delete(kind.model).where(key.in_(picked), rule)
    total = 0
    while True:
        with conn.begin():
            deleted = int(conn.execute(statement).rowcount or 0)
        total += deleted
        if deleted < batch_size:
            return total
