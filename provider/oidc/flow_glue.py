"""The sign-in door's side of the activation flow: it wraps the flow, the flow never
knows it is there (it calls `provider.flows.caller.Caller`, implemented here).

A sign-in request arriving while this browser holds an identified flow, finished or not,
starts a fresh one: an earlier student's flow on a shared computer is never asserted for
the next one. An answer naming an account is issued at one point only: the end page of a
flow whose activation has just succeeded, for that flow's account, once (the request is
removed from the flow with compare-and-set before the code is made).
"""

from __future__ import annotations

from flask import Blueprint, Flask, current_app, redirect, render_template, session, url_for
from flask.typing import ResponseReturnValue

from provider import audit
from provider.flows import caller as flow_caller
from provider.flows.engine import FlowConflict, FlowEngine, FlowState
from provider.flows.state import ActivationData
from provider.flows.views import current_flow, engine, forget_flow, start_over, to_current
from provider.keycloak import STATE_ACTIVE
from provider.oidc import handoff
from provider.oidc.server import Subject
from provider.services import services

# Under /activate, where the flow's cookie is sent.
bp = Blueprint("sign_in_flow", __name__, url_prefix="/activate")

Flow = FlowState[ActivationData]
Engine = FlowEngine[ActivationData]


class SignInCaller:
    """A sign-in from Keycloak, waiting for the activation to end."""

    def waiting(self, state: Flow) -> bool:
        return handoff.SESSION_KEY in session or bool(state.data and state.data.caller)

    def on_start(self, engine: Engine, state: Flow) -> ResponseReturnValue | None:
        if handoff.SESSION_KEY not in session or state.flow_id is None:
            return None
        if state.user_id and state.step != engine.steps[-1]:
            # Any page can send a browser to /oidc/authorize: that alone must not throw
            # away an activation in progress. The student chooses.
            return render_template("oidc/sign_in_elsewhere.html")
        # The flow may be someone else's: it ends, and the request waits in the session
        # until the next identify carries it into a new flow.
        try:
            engine.finish(state)
        except FlowConflict:  # a parallel request moved it: look again
            return None
        return forget_flow(redirect(url_for("flow.step", name=engine.steps[0])))

    def carry_into(self, data: ActivationData) -> None:
        data.caller = handoff.take_from_session()

    def user_id_hint(self) -> str | None:
        # Keycloak's login_hint on the request waiting here (the pre-fill's source).
        waiting = session.get(handoff.SESSION_KEY)
        hint = waiting.get(handoff.LOGIN_HINT) if isinstance(waiting, dict) else None
        return hint if isinstance(hint, str) else None

    def on_end(self, engine: Engine, state: Flow) -> ResponseReturnValue | None:
        # The one place an identity is asserted: this browser's flow has just activated
        # its own account, and a sign-in was waiting for it.
        if state.data is None or not state.data.caller or not state.data.activated:
            return None
        params = _take_sign_in(engine, state)
        if params is None:
            return None
        svc = services(current_app)
        # Keycloak links by username: assert the account's name as it is now, and only
        # while it is active.
        user = svc.keycloak.get_user(state.data.keycloak_id)
        if user.activation_state != STATE_ACTIVE:
            return handoff.answer(params, None)
        audit.record_now(svc.sessions, audit.STUDENT, "sign_in.asserted", state.user_id)
        return handoff.answer(params, Subject(keycloak_id=user.id, username=user.username))

    def on_impossible(self, engine: Engine, state: Flow) -> ResponseReturnValue | None:
        params = _take_sign_in(engine, state)
        # Keycloak tells them what to do.
        return None if params is None else handoff.answer(params, None)


def _take_sign_in(engine: Engine, state: Flow) -> dict[str, str] | None:
    """Remove the waiting sign-in request from this browser, exactly once."""
    if state.data is not None and state.data.caller is not None:
        params, state.data.caller = state.data.caller, None
        try:
            engine.save(state)
        except FlowConflict:
            return None  # another request took it
        return params
    return handoff.take_from_session()


@bp.post("/sign-in/keep")
def keep_activation() -> ResponseReturnValue:
    """Go on with the activation in progress; the sign-in that arrived is dropped."""
    handoff.take_from_session()
    return to_current(current_flow())


@bp.post("/sign-in/switch")
def switch_to_sign_in() -> ResponseReturnValue:
    """Start over for the sign-in that arrived: the open flow ends, the request stays."""
    return start_over(current_flow())


@bp.post("/cancel")
def cancel() -> ResponseReturnValue:
    """ "Return to sign-in": tell Keycloak the student stopped (OAuth access_denied)."""
    state = current_flow()
    params = _take_sign_in(engine(), state)
    if params is None:
        return to_current(state)
    return handoff.answer(params, None)


def install(app: Flask) -> None:
    app.extensions[flow_caller.EXTENSION] = SignInCaller()
    app.register_blueprint(bp)
