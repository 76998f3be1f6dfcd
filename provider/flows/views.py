"""The activation flow's routes under /activate: the generic runner over its steps, plus
the password meter's endpoint. Nothing here knows what a step does."""

from __future__ import annotations

from flask import Response, jsonify
from flask.typing import ResponseReturnValue

from provider.flows.activation import ACTIVATION
from provider.flows.engine import FlowEngine, FlowState
from provider.flows.runner import FlowRoutes
from provider.flows.state import ActivationData
from provider.flows.steps import password
from provider.limits import limiter, strength_limit

routes: FlowRoutes[ActivationData] = FlowRoutes(ACTIVATION)
bp = routes.bp

Flow = FlowState[ActivationData]


def engine() -> FlowEngine[ActivationData]:
    return routes.engine()


def current_flow() -> Flow:
    return routes.current_flow()


def forget_flow(response: Response) -> Response:
    return routes.forget_flow(response)


def to_current(state: Flow) -> ResponseReturnValue:
    return routes.to_current(state)


def start_over(state: Flow) -> Response:
    return routes.start_over(state)


@bp.post("/password/strength")
@limiter.limit(strength_limit)
def password_strength() -> ResponseReturnValue:
    """The meter's live verdict, for the password page's optional script (CSRF-checked
    like a form)."""
    state = current_flow()
    if state.step != password.PasswordStep.name:
        return jsonify(error="not at the password step"), 409
    return password.strength_verdict(routes.visit(state, ACTIVATION.by_name[state.step]))
