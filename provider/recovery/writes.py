"""Recovery's writes to Keycloak, ordered so that a failure at any point leaves a
consistent account and a flow that can be retried, and parallel submits write once.

Unlock: claim the flow (compare-and-set on its version: of twenty parallel submits one
goes on, the rest are told it is under way) → lift Keycloak's brute-force lock and the
service's own (each idempotent) → tell every verified contact (once: `told`) → the end.

New password: claim → set the password (permanent) → sign the account out of every
Keycloak session → lift the locks → tell → the end. The password comes before the
sign-out: signed out first, a session could be opened again with the old password before
it changed. Each done part is written to the flow before the next begins, so a retry
(after Keycloak answered 503, or a crash) goes on from the first part not done. A write
whose answer was lost may have landed: the flow keeps a keyed digest of that password, so
a retry with the same password that the realm's password history refuses is known to be
the write that landed, and any other refusal is the student's to fix.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime

from flask_babel import format_datetime
from sqlalchemy.exc import SQLAlchemyError

from provider import audit
from provider.delivery import DeliveryFailed
from provider.delivery import messages as texts
from provider.flows.engine import FlowConflict, FlowEngine, FlowState
from provider.flows.steps.activate import CLAIM_LEASE
from provider.guards import lockout, send_budget
from provider.keycloak import (
    PHONE_NUMBER,
    PHONE_NUMBER_VERIFIED,
    STATE_ACTIVE,
    PasswordRejected,
)
from provider.keyed_hash import Purpose
from provider.recovery.state import Outcome, RecoveryData
from provider.services import Services

log = logging.getLogger(__name__)

Flow = FlowState[RecoveryData]
Engine = FlowEngine[RecoveryData]


class WriteInProgress(Exception):
    """Another submit of this flow is writing right now."""


class NotRecoverable(Exception):
    """The account is no longer an active, enabled student (e.g. the help desk set it
    back to pending meanwhile): nothing was written."""


def unlock(svc: Services, engine: Engine, state: Flow, now: datetime | None = None) -> None:
    now = now or datetime.now(UTC)
    data = _claim(engine, state, now)
    try:
        _ensure_recoverable(svc, data)
        _lift_locks(svc, state)
    except Exception:
        _release(engine, state, now)
        raise
    _finish(svc, engine, state, "unlocked", now)


def reset(
    svc: Services, engine: Engine, state: Flow, password: str, now: datetime | None = None
) -> None:
    """Set `password`, sign out everywhere, lift the locks; raise `PasswordRejected`
    (nothing changed) or a gateway error (retry)."""
    now = now or datetime.now(UTC)
    data = _claim(engine, state, now)
    keycloak_id = _account(data)
    digest = svc.hasher.digest(Purpose.RECOVERY_PASSWORD, f"{engine.key(state)}:{password}")
    previous = data.password_maybe_set
    try:
        if not (data.password_set and previous == digest):  # else: this one is set already
            _ensure_recoverable(svc, data)  # never a password on an account not active now
            data.password_set = False
            data.password_maybe_set = digest  # from here the write may land unseen
            engine.save(state, now=now)
            try:
                svc.keycloak.set_password(keycloak_id, password)
            except PasswordRejected as refused:
                # The history refusing the very password whose answer was lost: it landed.
                if previous != digest or not refused.error_key.startswith("invalidPasswordHistory"):
                    data.password_maybe_set = previous
                    raise
            data.password_set = True
            engine.save(state, now=now)
        if not data.signed_out:
            svc.keycloak.sign_out_everywhere(keycloak_id)
            data.signed_out = True
            engine.save(state, now=now)
        _lift_locks(svc, state)
    except FlowConflict:
        raise WriteInProgress from None
    except Exception:
        _release(engine, state, now)
        raise
    _finish(svc, engine, state, "reset", now)


def _ensure_recoverable(svc: Services, data: RecoveryData) -> None:
    """Checked again just before the first write: proven a while ago is not enough."""
    user = svc.keycloak.get_user(_account(data))
    if user.activation_state != STATE_ACTIVE or not user.enabled:
        raise NotRecoverable


def _claim(engine: Engine, state: Flow, now: datetime) -> RecoveryData:
    data = state.data
    if data is None or data.keycloak_id is None or not data.proven:
        raise FlowConflict  # never without a proven account
    if data.claim and now - datetime.fromisoformat(data.claim) < CLAIM_LEASE:
        raise WriteInProgress
    data.claim = now.isoformat()
    try:
        engine.save(state, now=now)
    except FlowConflict:
        raise WriteInProgress from None
    return data


def _release(engine: Engine, state: Flow, now: datetime) -> None:
    if state.data is not None:
        state.data.claim = None
    with contextlib.suppress(FlowConflict):
        engine.save(state, now=now)


def _account(data: RecoveryData) -> str:
    if data.keycloak_id is None:
        raise FlowConflict
    return data.keycloak_id


def _lift_locks(svc: Services, state: Flow) -> None:
    """Keycloak's brute-force lock, then the service's own for this student: identify's
    and recovery's counters (idempotent, so a retry repeats them harmlessly)."""
    data = state.data
    if data is None:
        raise FlowConflict
    svc.keycloak.clear_lockout(_account(data))
    user_id = state.user_id or ""
    lockout.clear(svc.sessions, lockout.lock_key(user_id))
    lockout.record_success(svc.sessions, data.lock_key, datetime.now(UTC))


def _finish(svc: Services, engine: Engine, state: Flow, outcome: Outcome, now: datetime) -> None:
    data = state.data
    if data is None:
        raise FlowConflict
    first_time = data.outcome is None
    data.outcome = outcome
    data.claim = None
    data.password_maybe_set = None
    with contextlib.suppress(FlowConflict):
        engine.save(state, now=now)
    if first_time:
        audit.record_now(
            svc.sessions,
            audit.STUDENT,
            "recovery.password_reset" if outcome == "reset" else "recovery.unlocked",
            state.user_id,
            channel=data.channel,
        )
    if not data.told:
        tell(svc, _account(data), outcome, now)
        data.told = True  # a crash just before this line tells twice, which beats never
    with contextlib.suppress(FlowConflict):  # a parallel request finished it
        engine.complete(state, now=now)


def tell(svc: Services, keycloak_id: str, outcome: Outcome, now: datetime) -> None:
    """Tell every verified contact of the account what happened, when, and what to do if
    it was not them. A failed notice is logged; it never undoes the recovery."""
    user = svc.keycloak.get_user(keycloak_id)
    when = format_datetime(now, "medium") + " UTC"
    if user.email and user.email_verified:
        try:
            svc.mailer.send(texts.recovery_notice_email(user.email, outcome, when))
        except DeliveryFailed:
            log.warning("recovery notice not delivered", extra={"action": "notice"})
    phone = user.attribute(PHONE_NUMBER)
    if phone and user.attribute(PHONE_NUMBER_VERIFIED) == "true":
        try:
            svc.sms.send(texts.recovery_notice_sms(phone, outcome, when))
            with contextlib.suppress(SQLAlchemyError):
                send_budget.count_text(svc.sessions, now)
        except DeliveryFailed:
            log.warning("recovery notice not delivered", extra={"action": "notice"})
