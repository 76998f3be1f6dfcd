"""The activation flow's pages: thin views over the engine and the step modules.

Each step has its own URL (/activate/<step>); asking for any other step than the
flow's current one redirects there, so steps cannot be skipped, and a reload or a
re-submit of a finished step lands on the right page without changing anything.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from flask_wtf import FlaskForm
from wtforms import BooleanField

from provider import audit
from provider.contact_input import mask_email, mask_phone
from provider.flows import activate as activation
from provider.flows import challenge as challenges
from provider.flows import identify as identify_step
from provider.flows import lockout
from provider.flows.contacts_step import ContactsStep
from provider.flows.engine import FLOW_COOKIE, FlowConflict, FlowEngine, FlowState
from provider.flows.password import PasswordForm, strength, weakness
from provider.flows.policies import accepted_record, current_policies
from provider.i18n import select_locale as get_locale_name
from provider.keycloak import STATE_ACTIVE, PasswordRejected
from provider.limits import (
    identify_limit,
    limiter,
    not_code_send,
    not_identify_post,
    send_limit,
    strength_limit,
)
from provider.oidc import handoff
from provider.oidc.server import Subject
from provider.password_policy import PasswordPolicy
from provider.services import Services, services
from provider.storage.models import ActivationCode, Student

bp = Blueprint("flow", __name__, url_prefix="/activate")
log = logging.getLogger(__name__)

STEPS = ("identify", "policies", "contacts", "password", "done")
TITLES = {
    "identify": _l("Confirm who you are"),
    "policies": _l("Campus IT policies"),
    "contacts": _l("Your phone and email"),
    "password": _l("Choose your password"),
    "done": _l("Your account is active"),
}


def engine() -> FlowEngine:
    return current_app.extensions["umpass.flow_engine"]


def _svc() -> Services:
    return services(current_app)


def _flow() -> FlowState:
    if "flow" not in g:
        state = engine().load_or_start(request.cookies.get(FLOW_COOKIE))
        if state.replaced_expired:
            flash(_("Your session timed out, so we started again. Nothing was changed."))
        elif state.user_id and state.step != "done" and not _code_still_stands(state):
            # Revoked, re-issued or expired since this flow was identified with it: the
            # flow ends here, before any further write, and the student starts over.
            engine().finish(state)
            # A fresh start whose cookie (naming nothing now) is cleared on the way out.
            state = FlowState(flow_id=None, step=STEPS[0], replaced_expired=True)
            flash(_("Your activation code was replaced or has expired, so we started again."))
        g.flow = state
    return g.flow


def _code_still_stands(state: FlowState) -> bool:
    with _svc().reads() as db:
        code = db.get(ActivationCode, state.data.get("code_id"))
    now = datetime.now(UTC)
    return code is not None and code.revoked_at is None and code.expires_at > now


@bp.after_app_request
def set_flow_cookie(response: Response) -> Response:
    state: FlowState | None = g.get("flow")
    if state is not None and state.flow_id is None and state.replaced_expired:
        response.delete_cookie(FLOW_COOKIE, path="/activate")  # it names nothing any more
    if state is not None and state.is_new:
        secure = current_app.config["SESSION_COOKIE_SECURE"]
        response.set_cookie(
            FLOW_COOKIE,
            state.flow_id,
            max_age=int(engine().idle.total_seconds()) * 4,
            path="/activate",
            secure=secure,
            httponly=True,
            samesite="Lax",
        )
    return response


def page_context(step: str) -> dict[str, object]:
    """What every step's template gets: where the student is, and who."""
    return {
        "step": step,
        "step_number": engine().position(step),
        "step_count": len(STEPS),
        "title": TITLES[step],
        "user_id": _flow().user_id,
        "sign_in_pending": handoff.pending(_flow()) and _oidc_enabled(),
    }


def _oidc_enabled() -> bool:
    return "umpass.oidc_server" in current_app.extensions


def _page(step: str, status: int = 200, **context: object) -> ResponseReturnValue:
    return render_template(f"flow/{step}.html", **page_context(step), **context), status


def _to_current(state: FlowState) -> ResponseReturnValue:
    return redirect(url_for("flow.step", name=state.step))


@bp.get("/")
def start() -> ResponseReturnValue:
    state = _flow()
    if _oidc_enabled() and _sign_in_would_end_open_work(state):
        # Any page can send a browser to /oidc/authorize: that alone must not throw away
        # an activation in progress. The student chooses.
        return render_template("flow/sign_in_elsewhere.html")
    if _oidc_enabled():
        with contextlib.suppress(FlowConflict):  # a parallel request moved it: look again
            replaced = handoff.attach(engine(), state)
            if replaced is not state:
                g.flow = replaced
                response = redirect(url_for("flow.step", name=replaced.step))
                response.delete_cookie(FLOW_COOKIE, path="/activate")
                return response
    return _to_current(_flow())


def _sign_in_would_end_open_work(state: FlowState) -> bool:
    waiting = handoff.SESSION_KEY in session
    return waiting and state.flow_id is not None and bool(state.user_id) and state.step != "done"


@bp.post("/sign-in/keep")
def keep_activation() -> ResponseReturnValue:
    """Go on with the activation in progress; the sign-in that arrived is dropped."""
    handoff.take_from_session()
    return _to_current(_flow())


@bp.post("/sign-in/switch")
def switch_to_sign_in() -> ResponseReturnValue:
    """Start over for the sign-in that arrived: the open flow ends, the request stays."""
    state = _flow()
    if state.user_id:
        audit.record_now(_svc().sessions, audit.STUDENT, "flow.restarted", state.user_id)
    engine().finish(state)
    response = redirect(url_for("flow.step", name="identify"))
    response.delete_cookie(FLOW_COOKIE, path="/activate")
    g.pop("flow", None)
    return response


@bp.post("/cancel")
def cancel() -> ResponseReturnValue:
    """ "Return to sign-in": tell Keycloak the student stopped (OAuth access_denied)."""
    state = _flow()
    params = _take_sign_in(state)
    if params is None or not _oidc_enabled():
        return _to_current(state)
    return handoff.answer(params, None)


def _take_sign_in(state: FlowState) -> dict[str, str] | None:
    """Remove the waiting sign-in request from this browser, exactly once."""
    params = state.data.pop(handoff.FLOW_KEY, None)
    if params is not None:
        try:
            engine().save(state)
        except FlowConflict:
            return None  # another request took it
        return params
    return handoff.take_from_session()


@bp.route("/<name>", methods=["GET", "POST"])
@limiter.limit(identify_limit, exempt_when=not_identify_post)
@limiter.limit(send_limit, exempt_when=not_code_send)
def step(name: str) -> ResponseReturnValue:
    state = _flow()
    if name not in STEPS or name != state.step:
        return _to_current(state)
    if request.method == "GET":
        engine().touch(state)
    handler = HANDLERS[name]
    return handler(state)


# -- step 1 --------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckView:
    """The proof-of-work check on the identify page: the widget's challenge when it is
    needed now (else None: the lock comes first), and the minutes until it is no longer
    needed (the way without JavaScript)."""

    challenge: str | None
    minutes: int


# Until when the user ID this browser typed last needs the check (Unix seconds): the
# forms it gets until then carry the check already. Never the ID itself.
CHECK_KEY = "umpass_check_until"


def _check_view(
    hot: lockout.Hot | None, now: datetime, *, explain_wait: bool = True
) -> CheckView | None:
    """What the page shows of the typed ID's check; remembered for this browser's next
    forms. `explain_wait`: say, while the ID is locked, that a check follows the lock."""
    if hot is None:
        if CHECK_KEY in session:  # (a pop alone would rewrite the cookie every time)
            del session[CHECK_KEY]
        return None
    until = int(hot.check_ends.timestamp())
    if session.get(CHECK_KEY) != until:
        session[CHECK_KEY] = until
    minutes = identify_step.minutes_until(hot.check_ends, now)
    if not hot.needs_check(now):
        return CheckView(None, minutes) if explain_wait else None
    svc = _svc()
    return CheckView(challenges.issue(svc.hasher, svc.settings.challenge_max_number, now), minutes)


def _remembered_check(now: datetime) -> CheckView | None:
    """A form shown without a typed ID: with the check while this browser's last typed ID
    needs it (during its lock too, which the submit then reports)."""
    until = session.get(CHECK_KEY)
    if not isinstance(until, int):
        return None
    ends = datetime.fromtimestamp(until, UTC)
    return _check_view(lockout.Hot(now, ends) if now < ends else None, now)


def _identify(state: FlowState) -> ResponseReturnValue:
    form = identify_step.IdentifyForm()
    if request.method == "GET" or not form.validate():
        status = 400 if request.method == "POST" else 200
        return _page("identify", status, form=form, check=_remembered_check(datetime.now(UTC)))
    try:
        who = identify_step.identify(
            _svc(),
            typed_user_id=form.user_id.data or "",
            typed_code=form.activation_code.data or "",
            date_of_birth=form.date_of_birth.data,
            typed_id_last4=form.id_last4.data or "",
            challenge_payload=request.form.get("altcha"),
        )
    except identify_step.IdentifyLocked as locked:
        minutes = locked.minutes
        return _page(
            "identify",
            429,
            form=form,
            check=_check_view(locked.hot, datetime.now(UTC)),
            failure=ngettext(
                "Too many attempts for this user ID. Try again in %(num)d minute, "
                "or ask the IT help desk.",
                "Too many attempts for this user ID. Try again in %(num)d minutes, "
                "or ask the IT help desk.",
                minutes,
            ),
        )
    except identify_step.IdentifyFailed as failed:
        return _page(
            "identify",
            400,
            form=form,
            # A lock this failure began shows on the next attempt, as before.
            check=_check_view(failed.hot, datetime.now(UTC), explain_wait=False),
            failure=_("We could not match those details. Check each one and try again."),
        )
    # Identified: a new flow id and a new session, so nothing from before carries over
    # but a waiting sign-in request (where to answer, never who).
    sign_in = handoff.take_from_session()
    session.clear()
    state.data = {
        "code_id": who.code_id,
        "keycloak_id": who.keycloak_id,
        # Masked contacts and the words a password must not be built from, so the next
        # steps need no Keycloak reads; dropped again once the account is active.
        "on_record": {
            "email": {"masked": mask_email(who.email), "verified": who.email_verified},
            "phone": {"masked": mask_phone(who.phone), "verified": who.phone_verified},
        },
        "hints": [w for w in (who.first_name, who.last_name, who.email_local) if w],
    }
    if sign_in:
        state.data[handoff.FLOW_KEY] = sign_in
    g.flow = engine().start_identified(state, user_id=who.user_id, step="policies")
    log.info("student identified", extra={"flow_step": "identify", "outcome": "ok"})
    return _to_current(g.flow)


@bp.post("/restart")
def restart() -> ResponseReturnValue:
    """ "Not you? Start again": forget this browser's flow (shared computers)."""
    state = _flow()
    engine().finish(state)
    if state.user_id:
        audit.record_now(_svc().sessions, audit.STUDENT, "flow.restarted", state.user_id)
    session.clear()
    flash(_("We started again. Nothing was changed."))
    response = redirect(url_for("flow.step", name="identify"))
    response.delete_cookie(FLOW_COOKIE, path="/activate")
    g.pop("flow", None)
    return response


# -- step 2 --------------------------------------------------------------------------


def _policies_form() -> FlaskForm:
    class PoliciesForm(FlaskForm):
        pass

    for policy in current_policies():
        setattr(
            PoliciesForm,
            policy.field_name,
            BooleanField(
                _(
                    "I accept “%(title)s” (version %(version)s)",
                    title=policy.title_in(get_locale_name()),
                    version=policy.version,
                )
            ),
        )
    return PoliciesForm()


def _policies(state: FlowState) -> ResponseReturnValue:
    form = _policies_form()
    policies = current_policies()
    if request.method == "GET" or not form.validate():
        return _page(
            "policies", 400 if request.method == "POST" else 200, form=form, policies=policies
        )
    missing = [p for p in policies if not form[p.field_name].data]
    if missing:
        for p in missing:
            form[p.field_name].errors = [
                _("Accept “%(title)s” to continue", title=p.title_in(get_locale_name()))
            ]
        return _page("policies", 400, form=form, policies=policies)
    at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    state.data["accepted_policies"] = [accepted_record(p, at) for p in policies]
    return _advance(state)


# -- step 3 --------------------------------------------------------------------------


def _contacts(state: FlowState) -> ResponseReturnValue:
    contacts = ContactsStep(_svc(), engine(), state)
    if request.method == "GET":
        return contacts.page()
    try:
        outcome = contacts.handle()
    except FlowConflict:
        return _to_current(engine().load_or_start(state.flow_id))
    return _advance(state) if outcome is None else outcome


# -- step 4 --------------------------------------------------------------------------


# Rules the service adds to the realm's own, shown with Keycloak's tips.
SERVICE_TIPS = [_l("Do not use your date of birth or your activation code.")]


def _password(state: FlowState) -> ResponseReturnValue:
    svc = _svc()
    form = PasswordForm()
    policy = svc.keycloak.password_policy()
    tips = [*policy.tips(), *SERVICE_TIPS]
    if request.method == "GET" or not form.validate():
        return _page("password", 400 if request.method == "POST" else 200, form=form, tips=tips)
    password = form.password.data or ""
    reason = _judge(svc, state, password, policy)
    if reason is None:
        try:
            activation.activate(svc, engine(), state, password, for_sign_in=handoff.pending(state))
        except PasswordRejected as exc:
            reason = exc.reason
        except activation.ActivationInProgress:
            failure = _(
                "We are already activating your account. Wait a moment, then reload this page."
            )
        except activation.ActivationImpossible:
            sign_in = _take_sign_in(state) if _oidc_enabled() else None
            if sign_in is not None:
                return handoff.answer(sign_in, None)  # Keycloak tells them what to do
            failure = _(
                "This activation cannot be completed. Ask the IT help desk for a new "
                "activation code."
            )
        else:
            log.info("account activated", extra={"flow_step": "password", "outcome": "ok"})
            return _to_current(state)
        if reason is None:  # in progress, or impossible: the password is not shown again
            return _page(
                "password", 409, form=PasswordForm(formdata=None), tips=tips, failure=failure
            )
    form.password.errors = [reason]
    return _page("password", 400, form=form, tips=tips)


def _judge(svc: Services, state: FlowState, password: str, policy: PasswordPolicy) -> str | None:
    """The service's own verdict on a password for this student (None: send it on)."""
    with svc.reads() as db:
        student = db.get(Student, state.user_id)
        code = db.get(ActivationCode, state.data["code_id"])
    return weakness(
        password,
        policy=policy,
        user_id=state.user_id or "",
        hints=_hints(state),
        hasher=svc.hasher,
        dob_hash=student.dob_hash if student else None,
        code_hash=code.code_hash if code else None,
    )


def _hints(state: FlowState) -> list[str]:
    return [state.user_id or "", *state.data.get("hints", []), "umpass"]


@bp.post("/password/strength")
@limiter.limit(strength_limit)
def password_strength() -> ResponseReturnValue:
    """The meter's live verdict, for the page's optional script (CSRF-checked like a form).

    Same judgement as the submit, so the meter never disagrees with the refusal.
    """
    state = _flow()
    if state.step != "password":
        return jsonify(error="not at the password step"), 409
    svc = _svc()
    password = (request.form.get("password") or "")[:1024]
    reason = _judge(svc, state, password, svc.keycloak.password_policy()) if password else None
    return jsonify(score=strength(password, _hints(state)) if password else 0, reason=reason)


# -- step 5 --------------------------------------------------------------------------


def _done(state: FlowState) -> ResponseReturnValue:
    # The one place an identity is asserted: this browser's flow has just activated
    # its own account, and a sign-in was waiting for it.
    if _oidc_enabled() and state.data.get("activated") and state.data.get(handoff.FLOW_KEY):
        params = _take_sign_in(state)
        if params is not None:
            # Keycloak links by username: assert the account's name as it is now, and
            # only while it is active.
            user = _svc().keycloak.get_user(state.data["keycloak_id"])
            if user.activation_state != STATE_ACTIVE:
                return handoff.answer(params, None)
            audit.record_now(_svc().sessions, audit.STUDENT, "sign_in.asserted", state.user_id)
            return handoff.answer(params, Subject(keycloak_id=user.id, username=user.username))
    return _page("done", sso_url=_svc().settings.after_activation_url)


def _advance(state: FlowState) -> ResponseReturnValue:
    with contextlib.suppress(FlowConflict):  # a parallel submit moved it on
        engine().advance(state)
        # For the activation funnel: who got how far (the step just reached).
        audit.record_now(_svc().sessions, audit.STUDENT, f"step.{state.step}", state.user_id)
    return _to_current(engine().load_or_start(state.flow_id))


HANDLERS = {
    "identify": _identify,
    "policies": _policies,
    "contacts": _contacts,
    "password": _password,
    "done": _done,
}
