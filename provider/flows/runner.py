"""A flow's routes: load the flow, hand the request to its current step, follow the
step's outcome. Nothing here knows what a step does, nor which flow it runs.

One `FlowRoutes` serves one `FlowDefinition` (the activation under /activate, recovery
under /recover). Each step has its own URL (<prefix>/<step>); asking for any other step
than the flow's current one redirects there, so steps cannot be skipped, and a reload or
a re-submit of a finished step lands on the right page without changing anything.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    flash,
    g,
    make_response,
    redirect,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import Connection

from provider import audit, form_input
from provider.flows.caller import Caller, NoCaller
from provider.flows.engine import D, FlowConflict, FlowEngine, FlowState, StandsClause
from provider.flows.step import (
    Finished,
    Identified,
    Impossible,
    Next,
    Outcome,
    Reopens,
    Stay,
    Step,
    StepLimit,
    Visit,
)
from provider.limits import limiter
from provider.services import services

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlowDefinition(Generic[D]):
    """What makes one flow: where it lives, its steps in order, and its few rules."""

    name: str  # the blueprint's name (url_for("<name>.step", ...))
    prefix: str  # its URLs, and the path its cookie is sent to
    cookie: str
    steps: tuple[Step[D], ...]
    # Does what the flow was identified with still stand (e.g. the activation code)?
    # Asked in the read that loads the flow, with its session.
    still_valid: StandsClause | None = None
    invalid_message: Callable[[], str] = lambda: ""
    # Who may wait for the flow's end (a sign-in); nobody by default.
    caller: Callable[[], Caller[D]] = NoCaller
    # Audit names: "<audit_prefix>.<step reached>", and a start-over of an identified flow
    # (None: not audited, e.g. where the flow's owner is not proven yet and the extra
    # write would show in the answer's time).
    audit_prefix: str = "step"
    restarted_event: str | None = "flow.restarted"
    # Whether identifying and starting over keep the browser's session (renewing only its
    # CSRF token): a flow that stores nothing there must not drop another's (a sign-in
    # waiting for the activation in another tab).
    keeps_session: bool = False
    by_name: dict[str, Step[D]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {step.name: step for step in self.steps})

    @property
    def first(self) -> str:
        return self.steps[0].name

    @property
    def last(self) -> str:
        return self.steps[-1].name


class FlowRoutes(Generic[D]):
    """The routes of one flow, on a blueprint of its own."""

    def __init__(self, definition: FlowDefinition[D]) -> None:
        self.flow = definition
        self._g_key = f"flow_{definition.name}"
        self.bp = Blueprint(definition.name, __name__, url_prefix=definition.prefix)
        self.bp.get("/")(self.start)
        self.bp.post("/restart")(self.restart)
        self.bp.route("/<name>", methods=["GET", "POST"])(
            form_input.answers_malformed_posts(self._step_limits(self.step))
        )
        self.bp.after_app_request(self._set_cookie)

    def engine(self) -> FlowEngine[D]:
        return current_app.extensions[engine_extension(self.flow.name)]

    # -- this browser's flow -------------------------------------------------------

    def current_flow(self) -> FlowState[D]:
        """This browser's flow (loaded once per request)."""
        state: FlowState[D] | None = g.get(self._g_key)
        if state is not None:
            return state
        engine = self.engine()
        state = engine.load_or_start(
            request.cookies.get(self.flow.cookie), stands=self.flow.still_valid
        )
        if state.replaced_expired:
            flash(_("Your session timed out, so we started again. Nothing was changed."))
        elif state.user_id and not state.stands:
            # What the flow was identified with no longer stands: it ends here, before
            # any further write, and the student starts over.
            engine.finish(state)
            # A fresh start whose cookie (naming nothing now) is cleared on the way out.
            state = FlowState(flow_id=None, step=self.flow.first, replaced_expired=True)
            flash(self.flow.invalid_message())
        setattr(g, self._g_key, state)
        return state

    def forget_flow(self, response: Response) -> Response:
        """This browser's flow is over: its cookie goes, and this request forgets it."""
        response.delete_cookie(self.flow.cookie, path=self.flow.prefix)
        g.pop(self._g_key, None)
        return response

    def _set_cookie(self, response: Response) -> Response:
        state: FlowState[D] | None = g.get(self._g_key)
        if state is None:
            return response
        if state.flow_id is None and state.replaced_expired:
            response.delete_cookie(self.flow.cookie, path=self.flow.prefix)  # names nothing
        if state.is_new:
            response.set_cookie(
                self.flow.cookie,
                state.flow_id or "",
                max_age=int(self.engine().idle.total_seconds()) * 4,
                path=self.flow.prefix,
                secure=current_app.config["SESSION_COOKIE_SECURE"],
                httponly=True,
                samesite="Lax",
            )
        return response

    def to_current(self, state: FlowState[D]) -> ResponseReturnValue:
        return redirect(url_for(f"{self.flow.name}.step", name=state.step))

    def visit(self, state: FlowState[D], step: Step[D]) -> Visit[D]:
        waiting = self.flow.caller().waiting(state)
        engine = self.engine()
        return Visit(
            svc=services(current_app),
            engine=engine,
            state=state,
            step=step,
            context={
                "flow_name": self.flow.name,
                "step": step.name,
                "step_number": engine.position(step.name),
                "step_count": len(self.flow.steps),
                "title": step.title,
                "user_id": state.user_id,
                "sign_in_pending": waiting,
            },
            waiting_sign_in=waiting,
        )

    # -- routes --------------------------------------------------------------------

    def start(self) -> ResponseReturnValue:
        state = self.current_flow()
        answered = self.flow.caller().on_start(self.engine(), state)
        return answered or self.to_current(self.current_flow())

    def restart(self) -> ResponseReturnValue:
        """ "Not you? Start again": forget this browser's flow (shared computers)."""
        response = self.start_over(self.current_flow())
        self._renew_session()
        flash(_("We started again. Nothing was changed."))
        return response

    def start_over(self, state: FlowState[D]) -> Response:
        """End this browser's flow (audited when it had identified someone); to the
        first step."""
        self.engine().finish(state)
        if state.user_id and self.flow.restarted_event:
            audit.record_now(
                services(current_app).sessions,
                audit.STUDENT,
                self.flow.restarted_event,
                state.user_id,
            )
        return self.forget_flow(redirect(url_for(f"{self.flow.name}.step", name=self.flow.first)))

    def _renew_session(self) -> None:
        """Nothing from before identification carries over: the whole session goes, or,
        for a flow that keeps it, its CSRF token (a new one is made for the next form)."""
        if self.flow.keeps_session:
            session.pop(current_app.config["WTF_CSRF_FIELD_NAME"], None)
        else:
            session.clear()

    def _step_limits(
        self, view: Callable[..., ResponseReturnValue]
    ) -> Callable[..., ResponseReturnValue]:
        """Each step's limits on the one step route, spent only by that step."""
        for step in self.flow.steps:
            for limit in step.limits:
                view = limiter.limit(
                    limit.value,
                    key_func=limit.key,
                    scope=f"{self.flow.name}.{step.name}.{limit.scope}",
                    exempt_when=_exempt(self.flow.name, step.name, limit),
                )(view)
        return view

    def step(self, name: str) -> ResponseReturnValue:
        state = self.current_flow()
        by_name = self.flow.by_name
        if name != state.step or name not in by_name:
            return self.to_current(state)
        caller = self.flow.caller()
        if state.step == self.flow.last:
            # The flow reached its goal: whoever sent the student may answer now.
            answered = caller.on_end(self.engine(), state)
            if answered is not None:
                return answered
        if request.method == "POST":
            reopened = self._reopen_earlier(state)
            if reopened is not None:
                return reopened
        visit = self.visit(state, by_name[name])
        if request.method != "POST":  # GET, and HEAD (which Flask-WTF does not CSRF-check)
            self.engine().touch(state)
            return visit.step.show(visit)
        if form_input.refusal() is not None:
            return self._refused(visit)
        try:
            outcome = visit.step.submit(visit)
        except FlowConflict:  # a parallel request changed the flow first: look again
            return self.to_current(self.engine().load_or_start(state.flow_id))
        return self._follow(visit, outcome)

    def _reopen_earlier(self, state: FlowState[D]) -> ResponseReturnValue | None:
        """Back to the first earlier step whose result no longer holds (a policy version
        published while the student was on a later step), before this step's answer is
        taken. Asked on posts only: a post is where anything is written (the activation
        among them), and a read on every page would cost every student a query for an
        event of a few minutes a year. Not on the end page: what was done there stands."""
        if state.user_id is None or state.step == self.flow.last:
            return None
        for earlier in self.flow.steps[: self.flow.steps.index(self.flow.by_name[state.step])]:
            if not isinstance(earlier, Reopens) or earlier.holds(self.visit(state, earlier)):
                continue
            try:
                self.engine().back_to(
                    state,
                    earlier.name,
                    along=lambda conn, name=earlier.name: audit.record(
                        conn,
                        audit.STUDENT,
                        f"{self.flow.audit_prefix}.{name}.reopened",
                        state.user_id,
                    ),
                )
            except FlowConflict:  # a parallel request moved it: look where it is
                return self.to_current(self.engine().load_or_start(state.flow_id))
            flash(earlier.reopened_message())
            return self.to_current(state)
        return None

    def _refused(self, visit: Visit[D]) -> ResponseReturnValue:
        """A post no page of ours sends (provider/form_input.py): the step's page again,
        400, and nothing it carried read. Not a try of anything: see form_input."""
        flash(form_input.message())
        response = make_response(visit.step.show(visit))
        if response.status_code == 200:
            response.status_code = 400
        return response

    def _follow(self, visit: Visit[D], outcome: Outcome[D]) -> ResponseReturnValue:
        state = visit.state
        engine = self.engine()
        caller = self.flow.caller()
        match outcome:
            case Stay(response):
                return response
            case Identified(user_id, data, then):
                # A new flow id and a new session, so nothing from before carries over but
                # what the caller keeps (where to answer a waiting sign-in, never who).
                caller.carry_into(data)
                self._renew_session()
                stored = engine.start_identified(state, user_id=user_id, data=data)
                setattr(g, self._g_key, stored)
                log.info("flow identified", extra={"flow_step": visit.step.name, "outcome": "ok"})
                if then is not None:
                    return then(stored) or self.to_current(stored)
                return self.to_current(stored)
            case Next(along):
                reached = engine.next_step(state.step)

                def moved_on(conn: Connection) -> None:
                    # What the step asked to write with its move, then, for the funnel, who
                    # got how far: all in the move's transaction (all land, or none).
                    if along is not None:
                        along(conn)
                    audit.record(
                        conn, audit.STUDENT, f"{self.flow.audit_prefix}.{reached}", state.user_id
                    )

                try:
                    engine.advance(state, along=moved_on)
                except FlowConflict:  # a parallel submit moved it on: look where it is
                    return self.to_current(engine.load_or_start(state.flow_id))
                return self.to_current(state)
            case Finished():
                if state.step != self.flow.last:
                    with contextlib.suppress(FlowConflict):  # a parallel request finished it
                        engine.complete(state)
                return self.to_current(state)
            case Impossible(response):
                return caller.on_impossible(engine, state) or response
        raise TypeError(f"not an outcome: {outcome!r}")


@functools.cache
def _exempt(flow: str, name: str, limit: StepLimit) -> Callable[[], bool]:
    # One function per step and limit: a flow's routes built again (another app in the
    # same process, e.g. recovery's, made per app) then register an equal limit, which
    # Flask-Limiter keeps once, instead of a second one spending the same budget again.
    # Every flow's step route is one view to Flask-Limiter, so each carries every flow's
    # step limits: the blueprint tells whose request it is.
    return lambda: (
        request.blueprint != flow
        or (request.view_args or {}).get("name") != name
        or not limit.spends()
    )


def engine_extension(flow_name: str) -> str:
    """Where the app keeps a flow's engine."""
    return f"umpass.flow_engine.{flow_name}"


def install(app: Flask, routes: FlowRoutes[D], engine: FlowEngine[D]) -> None:
    app.extensions[engine_extension(routes.flow.name)] = engine
    app.register_blueprint(routes.bp)
