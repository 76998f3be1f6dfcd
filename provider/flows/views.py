"""The activation flow's routes: load the flow, hand the request to its current step,
follow the step's outcome. Nothing here knows what a step does.

Each step has its own URL (/activate/<step>); asking for any other step than the flow's
current one redirects there, so steps cannot be skipped, and a reload or a re-submit of
a finished step lands on the right page without changing anything.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from provider import audit
from provider.flows.activation import BY_NAME, STEPS, code_still_stands
from provider.flows.caller import caller
from provider.flows.engine import FLOW_COOKIE, FlowConflict, FlowEngine, FlowState
from provider.flows.state import ActivationData
from provider.flows.step import (
    Finished,
    Identified,
    Impossible,
    Next,
    Outcome,
    Stay,
    Step,
    StepLimit,
    Visit,
)
from provider.flows.steps import password
from provider.limits import limiter, strength_limit
from provider.services import services

bp = Blueprint("flow", __name__, url_prefix="/activate")
log = logging.getLogger(__name__)

Flow = FlowState[ActivationData]


def engine() -> FlowEngine[ActivationData]:
    return current_app.extensions["umpass.flow_engine"]


def current_flow() -> Flow:
    """This browser's flow (loaded once per request)."""
    if "flow" not in g:
        state = engine().load_or_start(request.cookies.get(FLOW_COOKIE))
        if state.replaced_expired:
            flash(_("Your session timed out, so we started again. Nothing was changed."))
        elif state.user_id and not code_still_stands(services(current_app).reads, state):
            # Revoked, re-issued or expired since this flow was identified with it: the
            # flow ends here, before any further write, and the student starts over.
            engine().finish(state)
            # A fresh start whose cookie (naming nothing now) is cleared on the way out.
            state = FlowState(flow_id=None, step=STEPS[0].name, replaced_expired=True)
            flash(_("Your activation code was replaced or has expired, so we started again."))
        g.flow = state
    return g.flow


def forget_flow(response: Response) -> Response:
    """This browser's flow is over: its cookie goes, and this request forgets it."""
    response.delete_cookie(FLOW_COOKIE, path="/activate")
    g.pop("flow", None)
    return response


@bp.after_app_request
def set_flow_cookie(response: Response) -> Response:
    state: Flow | None = g.get("flow")
    if state is not None and state.flow_id is None and state.replaced_expired:
        response.delete_cookie(FLOW_COOKIE, path="/activate")  # it names nothing any more
    if state is not None and state.is_new:
        secure = current_app.config["SESSION_COOKIE_SECURE"]
        response.set_cookie(
            FLOW_COOKIE,
            state.flow_id or "",
            max_age=int(engine().idle.total_seconds()) * 4,
            path="/activate",
            secure=secure,
            httponly=True,
            samesite="Lax",
        )
    return response


def to_current(state: Flow) -> ResponseReturnValue:
    return redirect(url_for("flow.step", name=state.step))


def _visit(state: Flow, step: Step) -> Visit:
    waiting = caller().waiting(state)
    return Visit(
        svc=services(current_app),
        engine=engine(),
        state=state,
        step=step,
        context={
            "step": step.name,
            "step_number": engine().position(step.name),
            "step_count": len(STEPS),
            "title": step.title,
            "user_id": state.user_id,
            "sign_in_pending": waiting,
        },
        waiting_sign_in=waiting,
    )


@bp.get("/")
def start() -> ResponseReturnValue:
    state = current_flow()
    return caller().on_start(engine(), state) or to_current(current_flow())


@bp.post("/restart")
def restart() -> ResponseReturnValue:
    """ "Not you? Start again": forget this browser's flow (shared computers)."""
    response = start_over(current_flow())
    session.clear()
    flash(_("We started again. Nothing was changed."))
    return response


def start_over(state: Flow) -> Response:
    """End this browser's flow (audited when it had identified someone); to the first step."""
    engine().finish(state)
    if state.user_id:
        audit.record_now(
            services(current_app).sessions, audit.STUDENT, "flow.restarted", state.user_id
        )
    return forget_flow(redirect(url_for("flow.step", name=STEPS[0].name)))


def _step_limits(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
    """Each step's per-address limits on the one step route, spent only by that step."""
    for step in STEPS:
        for limit in step.limits:
            view = limiter.limit(limit.value, exempt_when=_exempt(step.name, limit))(view)
    return view


def _exempt(name: str, limit: StepLimit) -> Callable[[], bool]:
    return lambda: (request.view_args or {}).get("name") != name or not limit.spends()


@bp.route("/<name>", methods=["GET", "POST"])
@_step_limits
def step(name: str) -> ResponseReturnValue:
    state = current_flow()
    if name != state.step or name not in BY_NAME:
        return to_current(state)
    if state.step == STEPS[-1].name:
        # The flow reached its goal: whoever sent the student may answer now.
        answered = caller().on_end(engine(), state)
        if answered is not None:
            return answered
    visit = _visit(state, BY_NAME[name])
    if request.method != "POST":  # GET, and HEAD (which Flask-WTF does not CSRF-check)
        engine().touch(state)
        return visit.step.show(visit)
    try:
        outcome = visit.step.submit(visit)
    except FlowConflict:  # a parallel request changed the flow first: look again
        return to_current(engine().load_or_start(state.flow_id))
    return _follow(visit, outcome)


def _follow(visit: Visit, outcome: Outcome) -> ResponseReturnValue:
    state = visit.state
    match outcome:
        case Stay(response):
            return response
        case Identified(user_id, data):
            # A new flow id and a new session, so nothing from before carries over but
            # what the caller keeps (where to answer a waiting sign-in, never who).
            data.caller = caller().carry()
            session.clear()
            g.flow = engine().start_identified(state, user_id=user_id, data=data)
            log.info("student identified", extra={"flow_step": visit.step.name, "outcome": "ok"})
            return to_current(g.flow)
        case Next():
            with contextlib.suppress(FlowConflict):  # a parallel submit moved it on
                engine().advance(state)
                # For the activation funnel: who got how far (the step just reached).
                audit.record_now(
                    visit.svc.sessions, audit.STUDENT, f"step.{state.step}", state.user_id
                )
            return to_current(engine().load_or_start(state.flow_id))
        case Finished():
            if state.step != STEPS[-1].name:
                with contextlib.suppress(FlowConflict):  # a parallel request finished it
                    engine().complete(state)
            return to_current(state)
        case Impossible(response):
            return caller().on_impossible(engine(), state) or response
    raise TypeError(f"not an outcome: {outcome!r}")


@bp.post("/password/strength")
@limiter.limit(strength_limit)
def password_strength() -> ResponseReturnValue:
    """The meter's live verdict, for the password page's optional script (CSRF-checked
    like a form)."""
    state = current_flow()
    if state.step != password.PasswordStep.name:
        return jsonify(error="not at the password step"), 409
    return password.strength_verdict(_visit(state, BY_NAME[state.step]))
