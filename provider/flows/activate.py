"""The last step's write: first password + active, exactly once, nothing half-done.

Order, and why each crash point is safe:

1. Claim the flow (compare-and-set on its version). Of twenty parallel submits one
   wins; the others are told activation is under way. A claim older than
   `CLAIM_LEASE` is stale (its request died) and may be taken over.
2. One Keycloak write sets the permanent password and `activation_state=active`
   together (see `KeycloakGateway.activate`). Before it the account is untouched and
   pending; after it, fully active.
3. Consume the activation code, then move the flow to "done". A crash before either
   leaves an active account whose flow retries: the retry finds the account active,
   sees its own earlier attempt, sets the password just typed (the student may have
   typed another one) and finishes these two bookkeeping writes.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

from provider.activation_codes import consume_code
from provider.flows.engine import FlowConflict, FlowEngine, FlowState
from provider.keycloak import ACCEPTED_POLICIES, GatewayError
from provider.services import Services
from provider.storage.models import ActivationCode

CLAIM_LEASE = timedelta(seconds=30)


class ActivationInProgress(Exception):
    """Another submit of this flow is activating right now."""


class ActivationImpossible(Exception):
    """The code was revoked or used, or the account was activated some other way."""


def activate(
    svc: Services,
    engine: FlowEngine,
    state: FlowState,
    password: str,
    now: datetime | None = None,
) -> None:
    """Activate the flow's account with `password`, or raise; see the module doc."""
    now = now or datetime.now(UTC)
    claim = state.data.get("claim")
    if claim and now - datetime.fromisoformat(claim) < CLAIM_LEASE:
        raise ActivationInProgress
    tried_before = bool(state.data.get("attempted"))
    state.data = {**state.data, "claim": now.isoformat(), "attempted": True}
    try:
        engine.save(state, now=now)
    except FlowConflict:
        raise ActivationInProgress from None

    code_id = int(state.data["code_id"])
    with svc.sessions() as session:
        code = session.get(ActivationCode, code_id)
        revoked = code is None or code.revoked_at is not None
        used = code is not None and code.used_at is not None
    if revoked or (used and not tried_before):
        _release(engine, state, now)
        raise ActivationImpossible

    try:
        wrote = svc.keycloak.activate(
            state.data["keycloak_id"],
            password,
            attributes={ACCEPTED_POLICIES: list(state.data.get("accepted_policies", []))},
            activated_at=now,
        )
    except GatewayError:
        _release(engine, state, now)
        raise
    if not wrote:
        if not tried_before:
            # Active already, and not through this flow: its password is not ours to set.
            _release(engine, state, now)
            raise ActivationImpossible
        # This flow's earlier attempt activated the account and then died. The student
        # has just typed a password again, maybe another one: that one must be it.
        try:
            svc.keycloak.set_password(state.data["keycloak_id"], password)
        except GatewayError:
            _release(engine, state, now)
            raise

    with svc.sessions.begin() as session:
        consume_code(session, code_id, now)  # False on a retry: already consumed
    state.data = {k: v for k, v in state.data.items() if k != "claim"}
    state.data["activated"] = True
    engine.save(state, step="done", now=now)


def _release(engine: FlowEngine, state: FlowState, now: datetime) -> None:
    """Give the claim back so the student can try again at once."""
    state.data = {k: v for k, v in state.data.items() if k != "claim"}
    with contextlib.suppress(FlowConflict):  # someone else moved it on: theirs stands
        engine.save(state, now=now)
