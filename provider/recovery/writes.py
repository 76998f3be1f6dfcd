"""Recovery's writes to Keycloak, ordered so that a failure at any point leaves a
consistent account and a flow that can be retried, and parallel submits write once.

Unlock: claim the flow → read the account (still an active, enabled student? its verified
contacts) → lift Keycloak's brute-force lock and the service's own (each idempotent) →
record the outcome → tell every verified contact → the end page.

New password: claim → read the account → set the password (permanent; only on an account
still active now) → sign the account out of every Keycloak session → lift the locks →
record, tell, the end page. The password comes before the sign-out: signed out first, a
session could be opened again with the old password before it changed. The account is
read before any write, so Keycloak failing there changes nothing, and failing later
cannot keep the contacts from being told.

The claim (a compare-and-set on the flow's version) is held from before the first write
until the flow reaches its end page: of twenty parallel submits one goes on, and a submit
arriving while the winner still tells the contacts is told it is under way instead of
writing again. A claim older than `CLAIM_LEASE` belonged to a request that died and may
be taken over. Each part done is written to the flow before the next begins, so a retry
(after Keycloak failed, or a crash once the lease is over) goes on from the first part
not done.

A password write whose answer was lost may have landed. Before sending a password the
flow keeps a keyed digest of it and Keycloak's stamp of the password it replaces
(`KeycloakGateway.password_stamp`): a retry with the same password that finds the stamp
moved knows the write landed and writes nothing more (the realm's password history would
refuse it as a reuse); a refusal with the stamp unmoved stands (an older password the
history holds, say), and the student chooses another.

The outcome and its audit event are one transaction: recorded once. The contacts are told
once, or twice if the process dies between telling them and marking them told (rather
than never); a notice that fails is logged, and neither undoes nor holds up the recovery.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from flask_babel import format_datetime
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from provider import audit, events
from provider.delivery import DeliveryFailed
from provider.delivery import messages as texts
from provider.events import outbox
from provider.flows.engine import FlowConflict, FlowEngine, FlowState
from provider.flows.steps.activate import CLAIM_LEASE
from provider.guards import lockout, send_budget
from provider.keycloak import STATE_ACTIVE, KeycloakUser, PasswordRejected
from provider.keyed_hash import Purpose
from provider.recovery.lookup import verified_contact
from provider.recovery.state import Outcome, RecoveryData
from provider.services import Services

log = logging.getLogger(__name__)

Flow = FlowState[RecoveryData]
Engine = FlowEngine[RecoveryData]

AUDIT_EVENTS: dict[Outcome, str] = {
    "unlocked": "recovery.unlocked",
    "reset": "recovery.password_reset",
}


DOWNSTREAM_EVENTS: dict[Outcome, str] = {
    "unlocked": events.UNLOCKED,
    "reset": events.PASSWORD_RESET,
}
CHANGED: dict[Outcome, list[str]] = {
    "unlocked": ["lockout"],
    "reset": ["password", "sessions", "lockout"],
}


class WriteInProgress(Exception):
    """Another submit of this flow is writing right now."""


class NotRecoverable(Exception):
    """The account is no longer an active, enabled student (e.g. the help desk set it
    back to pending meanwhile): nothing was written."""


@dataclass(frozen=True)
class Contacts:
    """The account's verified contacts, the ones told."""

    email: str | None
    phone: str | None


def unlock(svc: Services, engine: Engine, state: Flow, now: datetime | None = None) -> None:
    """Lift the locks, keep the password; raise `NotRecoverable`, a gateway error (retry)
    or `WriteInProgress`."""
    now = now or datetime.now(UTC)
    _require_proofs(svc, state)
    data = _claim(engine, state, now)
    with _claimed(engine, state, now):
        user = svc.keycloak.get_user(_account(data))
        _ensure_recoverable(user)
        contacts = _contacts(user)
        _lift_locks(svc, state, now)
        _finish(svc, engine, state, "unlocked", contacts, now)


def reset(
    svc: Services, engine: Engine, state: Flow, password: str, now: datetime | None = None
) -> None:
    """Set `password`, sign out everywhere, lift the locks; raise `PasswordRejected` or
    `NotRecoverable` (nothing changed), a gateway error (retry) or `WriteInProgress`."""
    now = now or datetime.now(UTC)
    _require_proofs(svc, state)
    data = _claim(engine, state, now)
    keycloak_id = _account(data)
    with _claimed(engine, state, now):
        user = svc.keycloak.get_user(keycloak_id)
        contacts = _contacts(user)
        _set_password(svc, engine, state, user, password, now)
        if not data.signed_out:
            svc.keycloak.sign_out_everywhere(keycloak_id)
            data.signed_out = True
            engine.save(state, now=now)
        _lift_locks(svc, state, now)
        _finish(svc, engine, state, "reset", contacts, now)


def _require_proofs(svc: Services, state: Flow) -> None:
    """Every proof the university asks for now, not only those its flow began with (a flow
    started before the date of birth was asked for never reaches a write without it)."""
    data = state.data
    if data is None or not data.proven:
        raise FlowConflict
    if svc.settings.recovery_asks_birth_date and not data.birth_date_proven:
        raise FlowConflict


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


@contextlib.contextmanager
def _claimed(engine: Engine, state: Flow, now: datetime) -> Iterator[None]:
    """The writes under the claim: a failure gives the claim back (what was done stays
    recorded in the flow) so the student can retry at once."""
    try:
        yield
    except FlowConflict:
        raise WriteInProgress from None  # the lease ran out and another request took over
    except Exception:
        if state.data is not None:
            state.data.claim = None
        with contextlib.suppress(FlowConflict):
            engine.save(state, now=now)
        raise


def _account(data: RecoveryData) -> str:
    if data.keycloak_id is None:
        raise FlowConflict
    return data.keycloak_id


def _ensure_recoverable(user: KeycloakUser) -> None:
    """Checked again right before writing: proven a while ago is not enough."""
    if user.activation_state != STATE_ACTIVE or not user.enabled:
        raise NotRecoverable


def _contacts(user: KeycloakUser) -> Contacts:
    return Contacts(verified_contact(user, "email"), verified_contact(user, "phone"))


def _set_password(
    svc: Services, engine: Engine, state: Flow, user: KeycloakUser, password: str, now: datetime
) -> None:
    data = state.data
    if data is None:
        raise FlowConflict
    keycloak_id = user.id
    digest = svc.hasher.digest(Purpose.RECOVERY_PASSWORD, f"{engine.key(state)}:{password}")
    same = data.password_digest == digest
    if same and (data.password_set or _landed(svc, keycloak_id, data.password_stamp)):
        _mark_password_set(engine, state, now)  # this very password is in already
        return
    _ensure_recoverable(user)  # never a password on an account not active now
    before = (data.password_digest, data.password_stamp, data.password_set)
    if not same:
        data.password_digest = digest
        data.password_stamp = svc.keycloak.password_stamp(keycloak_id)
    data.password_set = False
    engine.save(state, now=now)  # from here the write may land unseen
    try:
        svc.keycloak.set_password(keycloak_id, password)
    except PasswordRejected:
        # The same password's earlier write may have landed meanwhile (late): then the
        # realm's history refuses it as a reuse, and it is in. Otherwise the refusal
        # stands and nothing of this attempt was written.
        if not (same and _landed(svc, keycloak_id, data.password_stamp)):
            data.password_digest, data.password_stamp, data.password_set = before
            raise
    _mark_password_set(engine, state, now)


def _landed(svc: Services, keycloak_id: str, stamp: int | None) -> bool:
    """Was a password set since Keycloak's stamp read `stamp`?"""
    return svc.keycloak.password_stamp(keycloak_id) != stamp


def _mark_password_set(engine: Engine, state: Flow, now: datetime) -> None:
    if state.data is None:
        raise FlowConflict
    state.data.password_set = True
    engine.save(state, now=now)


def _lift_locks(svc: Services, state: Flow, now: datetime) -> None:
    """Keycloak's brute-force lock, then the service's own for this student: identify's
    and recovery's counters (idempotent, so a retry repeats them harmlessly)."""
    data = state.data
    if data is None:
        raise FlowConflict
    svc.keycloak.clear_lockout(_account(data))
    user_id = state.user_id or ""
    lockout.clear(svc.sessions, lockout.lock_key(user_id))
    # Recovery's counters: the one this flow's typing counted on, and the user ID's.
    lockout.record_success(svc.sessions, data.lock_key, now)
    lockout.record_success(svc.sessions, lockout.recovery_key(user_id), now)


def _finish(
    svc: Services,
    engine: Engine,
    state: Flow,
    outcome: Outcome,
    contacts: Contacts,
    now: datetime,
) -> None:
    """Record the outcome (with its audit event), tell the contacts, then release the
    claim by moving to the end page: until then a parallel submit finds it claimed."""
    data = state.data
    if data is None:
        raise FlowConflict
    if data.outcome != outcome:
        data.outcome = outcome
        data.told = False  # (an unlock cut short before a new password: tell of this one)
        event = AUDIT_EVENTS[outcome]

        def recorded(conn: Connection) -> None:
            audit.record(conn, audit.STUDENT, event, state.user_id, channel=data.channel)
            # Downstream's event with the outcome and its audit, after the Keycloak writes
            # (which have no transaction to share): recorded only once they landed. A
            # crash in between leaves the flow claimed with its parts marked done; the
            # retry goes on from there and records it, once (data.outcome guards it).
            outbox.record(
                conn,
                DOWNSTREAM_EVENTS[outcome],
                state.user_id or "",
                at=now,
                keycloak_id=data.keycloak_id,
                changed=CHANGED[outcome],
                by="student",
            )

        engine.save(state, now=now, along=recorded)
    if not data.told:
        tell(svc, contacts, outcome, now)
        data.told = True  # a crash just before this line tells twice, which beats never
    data.claim = None
    data.password_digest = None
    data.password_stamp = None
    engine.complete(state, now=now)


def tell(svc: Services, contacts: Contacts, outcome: Outcome, now: datetime) -> None:
    """Tell every verified contact what happened, when, and what to do if it was not
    them, in the language of the request. A failed notice is logged; it never undoes the
    recovery."""
    when = format_datetime(now, "medium") + " UTC"
    if contacts.email:
        try:
            svc.mailer.send(texts.recovery_notice_email(contacts.email, outcome, when))
        except DeliveryFailed:
            log.warning("recovery notice not delivered", extra={"action": "notice"})
    if contacts.phone:
        try:
            svc.sms.send(texts.recovery_notice_sms(contacts.phone, outcome, when))
        except DeliveryFailed:
            log.warning("recovery notice not delivered", extra={"action": "notice"})
            return
        with contextlib.suppress(SQLAlchemyError):
            send_budget.count_text(svc.sessions, now)
