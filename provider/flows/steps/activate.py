"""The password step's write: first password + active, exactly once, nothing half-done.

Order, and why each crash point is safe:

1. Claim the flow (compare-and-set on its version): of twenty parallel submits of one
   flow, one goes on; the others are told activation is under way.
2. Claim the activation code in the database for this flow, in the same transaction as
   1 (both or neither): of two flows of the same student (two tabs, two devices, two
   replicas), one goes on. A claim older than `CLAIM_LEASE` belonged to a request that
   died and may be taken over.
3. One Keycloak write sets the permanent password and `activation_state=active`
   together (see `KeycloakGateway.activate`). Before it the account is untouched and
   pending; after it, fully active.
4. Consume the code, record the audit and the `student.activated` event for downstream
   (provider/events), and move the flow to "done", in one transaction. A crash before it
   leaves an active account and a code still claimed by this flow: the student's next
   submit finds the account active *and* the claim its own, sets the password just
   typed (it may differ from the first) and finishes. A flow that never wrote, or whose
   claim was given back after a refusal, can never touch an account that is already
   active.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, bindparam, lambda_stmt, or_, select, update
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.lambdas import StatementLambdaElement

from provider import audit, events
from provider.activation_codes import consume_code
from provider.events import outbox
from provider.flows.engine import FlowConflict, FlowEngine, FlowState
from provider.flows.state import ActivationData
from provider.keycloak import (
    ACCEPTED_POLICIES,
    STATE_ACTIVE,
    GatewayError,
    IdentityServiceUnavailable,
    UserNotFound,
)
from provider.policies import evidence
from provider.services import Services
from provider.storage.engine import bind_of
from provider.storage.models import ActivationCode

_CODES = ActivationCode.__table__


# Statements as lambdas (see provider/flows/engine.py).
def _claim_read() -> StatementLambdaElement:
    return lambda_stmt(
        lambda: select(
            _CODES.c.revoked_at, _CODES.c.used_at, _CODES.c.expires_at, _CODES.c.claimed_by
        ).where(_CODES.c.id == bindparam("code_id"))
    )


def _claim() -> StatementLambdaElement:
    return lambda_stmt(
        lambda: (
            update(_CODES)
            .where(
                _CODES.c.id == bindparam("code_id"),
                _CODES.c.used_at.is_(None),
                _CODES.c.revoked_at.is_(None),
                _CODES.c.expires_at > bindparam("now"),
                or_(
                    _CODES.c.claimed_by.is_(None),
                    _CODES.c.claimed_by == bindparam("flow"),
                    _CODES.c.claimed_at < bindparam("stale"),
                ),
            )
            .values(claimed_by=bindparam("flow"), claimed_at=bindparam("now"))
        )
    )


# Longer than the slowest Keycloak round a request can make (pool wait, token, read and
# write at UMPASS_KC_TIMEOUT each), so a live request's claim is never taken over.
CLAIM_LEASE = timedelta(seconds=120)


class ActivationInProgress(Exception):
    """Another submit is activating this account right now."""


class ActivationImpossible(Exception):
    """The code was revoked or used, or the account was activated some other way."""


class _CodeRefused(Exception):
    """The code could not be claimed for this flow (inside the claims' transaction)."""


@dataclass(frozen=True)
class _CodeClaim:
    ours_before: bool  # this flow held the claim already (an earlier attempt of its own)
    already_used: bool  # ...and even consumed it: the password again and "done" are left


def activate(
    svc: Services,
    engine: FlowEngine[ActivationData],
    state: FlowState[ActivationData],
    password: str,
    now: datetime | None = None,
    *,
    for_sign_in: bool = False,
) -> None:
    """Activate the flow's account with `password`, or raise; see the module doc."""
    now = now or datetime.now(UTC)
    data = state.data
    if data is None:
        raise ActivationImpossible
    if data.claim and now - datetime.fromisoformat(data.claim) < CLAIM_LEASE:
        raise ActivationInProgress
    data.claim = now.isoformat()
    code_id = data.code_id
    claims: list[_CodeClaim] = []

    def claim_code(conn: Connection) -> None:
        claim = _claim_code(conn, code_id, flow_key, now)
        if claim is None:
            raise _CodeRefused
        claims.append(claim)

    try:
        flow_key = engine.key(state)
        # Both claims in one transaction: the flow's (compare-and-set on its version),
        # then the code's; a refused code takes the flow's claim back with it.
        engine.save(state, now=now, along=claim_code)
    except FlowConflict:
        raise ActivationInProgress from None
    except _CodeRefused:
        data.claim = None
        raise ActivationImpossible from None
    code_claim = claims[0]
    keycloak_id = data.keycloak_id
    try:
        if code_claim.already_used:
            # This flow's write landed and its code was consumed, then the request died
            # before "done". The password typed now must hold, as after a lost answer, but
            # only on the account this flow made active: never on one set back to pending.
            if svc.keycloak.get_user(keycloak_id).activation_state != STATE_ACTIVE:
                raise ActivationImpossible
            svc.keycloak.set_password(keycloak_id, password)
        else:
            wrote = svc.keycloak.activate(
                keycloak_id,
                password,
                attributes={ACCEPTED_POLICIES: list(data.accepted_policies)},
                activated_at=now,
                for_sign_in=for_sign_in,
            )
            if not wrote:
                if not code_claim.ours_before:
                    # Active already, and not through this flow: not ours to touch.
                    raise ActivationImpossible
                # This flow's earlier write landed, then its request died. The student
                # has typed a password again, maybe another one: that one must hold.
                svc.keycloak.set_password(keycloak_id, password)
    except UserNotFound:
        _release(svc.sessions, engine, state, code_id, flow_key, now)
        raise ActivationImpossible from None
    except IdentityServiceUnavailable:
        # The write may have landed before the answer was lost: the code stays claimed
        # by this flow, so the retry can tell its own write from another's.
        _release_flow(engine, state, now)
        raise
    except (GatewayError, ActivationImpossible):
        # A definite refusal: nothing was written by this attempt.
        if code_claim.ours_before:
            _release_flow(engine, state, now)  # the claim marks an earlier write
        else:
            _release(svc.sessions, engine, state, code_id, flow_key, now)
        raise

    def consumed(conn: Connection) -> None:
        if not code_claim.already_used:
            consume_code(conn, code_id, now)
            audit.record(
                conn,
                audit.STUDENT,
                "account.activated",
                state.user_id,
                recovered=code_claim.ours_before,
            )
            # Downstream's event, in this same transaction: a crash keeps the code
            # consumed, the audit and the event together, or none of them (the retry
            # above then writes them). One INSERT; `umpass deliver` sends it.
            outbox.record(
                conn,
                events.ACTIVATED,
                state.user_id or "",
                at=now,
                keycloak_id=keycloak_id,
                activation_state=STATE_ACTIVE,
                changed=["password", "activation_state"],
                verified_contacts=verified,
            )
            # The evidence the account now holds, kept by the service too.
            evidence.record(conn, state.user_id or "", data.accepted_policies)

    # Verified contacts, for downstream's event: the contacts step's record, which the
    # flow forgets now (a retry after a crash here finds it forgotten: none are named).
    verified = sorted(channel for channel, held in data.on_record.items() if held.verified)
    data.forget_transient()
    data.activated = True
    try:
        # The code consumed and the flow "done" in one transaction.
        engine.complete(state, now=now, along=consumed)
    except FlowConflict:
        # A parallel request finished the flow first: its "done" stands, and the code is
        # consumed all the same.
        with bind_of(svc.sessions).begin() as conn:
            consumed(conn)


def _claim_code(conn: Connection, code_id: int, flow_key: str, now: datetime) -> _CodeClaim | None:
    """Take the code for this flow; None when it is revoked, or used or held by another."""
    code = conn.execute(_claim_read(), {"code_id": code_id}).first()
    if code is None or code.revoked_at is not None:
        return None
    if code.used_at is None and code.expires_at <= now:
        return None  # expired while the student was on the later steps
    ours = code.claimed_by == flow_key
    if code.used_at is not None:
        return _CodeClaim(ours_before=True, already_used=True) if ours else None
    taken = conn.execute(
        _claim(),
        {"code_id": code_id, "flow": flow_key, "now": now, "stale": now - CLAIM_LEASE},
    ).rowcount
    if not taken:
        return None
    return _CodeClaim(ours_before=ours, already_used=False)


def _release(
    sessions: sessionmaker[Session],
    engine: FlowEngine[ActivationData],
    state: FlowState[ActivationData],
    code_id: int,
    flow_key: str,
    now: datetime,
) -> None:
    """Nothing was written: give both claims back so the student can try again at once."""
    with sessions.begin() as session:
        session.execute(
            update(ActivationCode)
            .where(ActivationCode.id == code_id, ActivationCode.claimed_by == flow_key)
            .values(claimed_by=None, claimed_at=None)
        )
    _release_flow(engine, state, now)


def _release_flow(
    engine: FlowEngine[ActivationData], state: FlowState[ActivationData], now: datetime
) -> None:
    if state.data is not None:
        state.data.claim = None
    with contextlib.suppress(FlowConflict):  # someone else moved it on: theirs stands
        engine.save(state, now=now)
