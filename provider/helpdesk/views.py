"""The console's pages. Every route checks the staff member's role; every action, and
every look at a student's record, is audited under the staff member's username."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from babel.dates import format_skeleton
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import RadioField, SelectChoice
from wtforms.validators import AnyOf, InputRequired

from provider import audit
from provider.activation_codes import IssuedCode
from provider.events import queue as outbox_queue
from provider.helpdesk import back_to_pending as pending
from provider.helpdesk import funnel as funnel_data
from provider.helpdesk import lockouts as lockout_data
from provider.helpdesk import recoveries as recovery_data
from provider.helpdesk import shown_once
from provider.helpdesk import student as students
from provider.helpdesk import timeline as plain
from provider.helpdesk.auth import ADMIN, HELPDESK, requires, staff
from provider.keycloak import STATE_PENDING
from provider.proofing import normalize_user_id
from provider.services import Services, services
from provider.spreadsheet import safe_cell
from provider.storage.models import AuditEvent

bp = Blueprint("helpdesk", __name__, url_prefix="/helpdesk")


def _svc() -> Services:
    return services(current_app)


def _me() -> str:
    who = staff()
    return who["username"] if who else "?"


@bp.context_processor
def console_context() -> dict[str, object]:
    who = staff()
    tz = plain.zone(_svc().settings.time_zone)
    return {
        "staff": who,
        "is_admin": bool(who and ADMIN in who["roles"]),
        # Times on the university's clock, and that clock's name beside them.
        "local_time": lambda at, pattern="yyyy-MM-dd HH:mm": plain.local(at, tz, pattern),
        "zone_name": plain.zone_name(tz),
        "state_word": plain.state,
    }


@bp.get("/signed-out")
def signed_out() -> ResponseReturnValue:
    return render_template("helpdesk/signed_out.html")


@bp.get("/")
@requires(HELPDESK, ADMIN)
def home() -> ResponseReturnValue:
    typed = (request.args.get("user_id") or "").strip()
    if typed:
        user_id = normalize_user_id(typed, _svc().settings.user_id_length)
        if user_id is None:
            flash(_("That is not a user ID. A user ID looks like dc12345."))
        else:
            return redirect(url_for("helpdesk.student", user_id=user_id))
    return render_template("helpdesk/home.html", typed=typed)


@bp.get("/students/<user_id>")
@requires(HELPDESK, ADMIN)
def student(user_id: str) -> ResponseReturnValue:
    return _student_page(user_id)


def _student_page(user_id: str, new_code: IssuedCode | None = None) -> ResponseReturnValue:
    svc = _svc()
    view = students.look_up(svc, user_id)
    if view.enrolled is None:  # only students this service enrolled, never staff accounts
        audit.record_now(svc.sessions, f"staff:{_me()}", "helpdesk.not_found", user_id)
        return render_template("helpdesk/not_found.html", user_id=user_id), 404
    audit.record_now(svc.sessions, f"staff:{_me()}", "helpdesk.viewed", user_id)
    timeline = plain.lines(view.events, view.enrolled, plain.zone(svc.settings.time_zone))
    response = render_template(
        "helpdesk/student.html",
        view=view,
        timeline=timeline,
        new_code=new_code,
        back_to_pending_offered=pending.offered(svc, view),
    )
    return response, 200, {"Cache-Control": "no-store"}


def _enrolled_or_404(user_id: str) -> students.StudentView:
    # Only students this service enrolled: the console never touches staff accounts.
    view = students.look_up(_svc(), user_id)
    if view.enrolled is None:
        audit.record_now(_svc().sessions, f"staff:{_me()}", "helpdesk.not_found", user_id)
        abort(404)
    return view


@bp.get("/lockouts")
@requires(HELPDESK, ADMIN)
def lockouts() -> ResponseReturnValue:
    """The user IDs locked out of identify now, newest first; a banner for a mass lockout."""
    svc = _svc()
    view = lockout_data.overview(svc)
    audit.record_now(
        svc.sessions,
        f"staff:{_me()}",
        "helpdesk.lockouts_viewed",
        None,
        locked=view.locked_now,
        recent=view.locked_recently,
    )
    response = render_template(
        "helpdesk/lockouts.html", view=view, not_enrolled=lockout_data.NOT_ENROLLED
    )
    return response, 200, {"Cache-Control": "no-store"}


@bp.post("/students/<user_id>/code")
@requires(HELPDESK, ADMIN)
def reissue_code(user_id: str) -> ResponseReturnValue:
    """First a question (the current code will stop working), then, with confirm=yes, a
    new code; its page is reached by redirect, so a reload never posts again."""
    view = _enrolled_or_404(user_id)
    if view.account is None or view.account.activation_state != STATE_PENDING:
        flash(_("This account is active already: it needs no activation code."))
        return redirect(url_for("helpdesk.student", user_id=user_id), 303)
    if request.form.get("confirm") != "yes":
        page = render_template("helpdesk/confirm_code.html", view=view)
        return page, 200, {"Cache-Control": "no-store"}
    issued = students.reissue(_svc(), user_id, _me())
    session[shown_once.TICKET] = shown_once.seal(_svc(), issued)
    return redirect(url_for("helpdesk.new_code", user_id=user_id), 303)


@bp.get("/students/<user_id>/new-code")
@requires(HELPDESK, ADMIN)
def new_code(user_id: str) -> ResponseReturnValue:
    """The code just issued, shown once (no-store); a reload shows the student's page."""
    ticket = session.get(shown_once.TICKET)
    if isinstance(ticket, dict) and ticket.get("user_id") == user_id:
        session.pop(shown_once.TICKET)
    issued = shown_once.take(_svc(), ticket, user_id)
    if issued is None:
        flash(
            _(
                "A new code is shown only once, just after it is issued. "
                "Issue another if the student still needs one."
            )
        )
        return redirect(url_for("helpdesk.student", user_id=user_id))
    return _student_page(user_id, new_code=issued)


@bp.post("/students/<user_id>/unlock")
@requires(HELPDESK, ADMIN)
def unlock(user_id: str) -> ResponseReturnValue:
    view = _enrolled_or_404(user_id)
    students.clear_lockouts(_svc(), view, _me())
    flash(_("All lockouts are cleared: the student can try again now."))
    return redirect(url_for("helpdesk.student", user_id=user_id))


_CHOOSE_WHY = _l("Choose why the account goes back to pending.")


class BackToPendingForm(FlaskForm):
    # One message for no reason and a forged one (WTForms' own would be "Not a valid choice").
    reason = RadioField(
        _l("Why does the account go back to pending?"),
        choices=[SelectChoice(value=key, label=words) for key, words in pending.REASONS.items()],
        validate_choice=False,
        validators=[InputRequired(_CHOOSE_WHY), AnyOf(list(pending.REASONS), _CHOOSE_WHY)],
    )


@bp.post("/students/<user_id>/pending")
@requires(HELPDESK, ADMIN)
def back_to_pending(user_id: str) -> ResponseReturnValue:
    """First a question with the reason to choose (the account stops working everywhere),
    then, with confirm=yes, the change (provider/helpdesk/back_to_pending.py)."""
    svc = _svc()
    view = _enrolled_or_404(user_id)
    if not pending.offered(svc, view):
        flash(_("This account is not active: there is nothing to set back to pending."))
        return redirect(url_for("helpdesk.student", user_id=user_id), 303)
    form = BackToPendingForm()
    answered = request.form.get("confirm") == "yes"
    if not answered or not form.validate():  # the question, or an answer without a reason
        page = render_template(
            "helpdesk/confirm_pending.html",
            view=view,
            form=form,
            unfinished=pending.unfinished(svc, view),
        )
        return page, 400 if answered else 200, {"Cache-Control": "no-store"}
    pending.set_back_to_pending(svc, view, _me(), form.reason.data or "")
    flash(
        _(
            "The account is pending again and every session has ended. "
            "Issue a new code when the student is ready to activate again."
        )
    )
    return redirect(url_for("helpdesk.student", user_id=user_id), 303)


@bp.get("/undelivered")
@requires(ADMIN)
def dead_letters() -> ResponseReturnValue:
    """Events a downstream system did not accept after every retry (provider/events)."""
    svc = _svc()
    with svc.reads() as db:
        rows = outbox_queue.dead_letters(db)
    audit.record_now(
        svc.sessions, f"staff:{_me()}", "helpdesk.undelivered_viewed", None, count=len(rows)
    )
    page = render_template("helpdesk/dead_letters.html", rows=rows)
    return page, 200, {"Cache-Control": "no-store"}


@bp.post("/undelivered/<int:delivery_id>")
@requires(ADMIN)
def send_again(delivery_id: int) -> ResponseReturnValue:
    """Back in the queue with fresh tries, audited with the event's student."""
    svc = _svc()
    with svc.sessions.begin() as db:
        user_id = outbox_queue.send_again(db, delivery_id, datetime.now(UTC))
        if user_id is not None:
            audit.record(
                db, f"staff:{_me()}", "helpdesk.event_sent_again", user_id, delivery=delivery_id
            )
    if user_id is None:
        flash(_("That event is not waiting to be sent again."))
    else:
        flash(_("The event will be sent again in a moment."))
    return redirect(url_for("helpdesk.dead_letters"), 303)


@bp.get("/audit.csv")
@requires(ADMIN)
def audit_export() -> ResponseReturnValue:
    svc = _svc()
    since_text = request.args.get("since", "")
    try:
        since = datetime.fromisoformat(since_text).replace(tzinfo=UTC) if since_text else None
    except ValueError:
        abort(400)
    query = select(AuditEvent).order_by(AuditEvent.id)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    with svc.reads() as session:
        rows = [students.describe(e) for e in session.scalars(query)]
    audit.record_now(
        svc.sessions, f"staff:{_me()}", "helpdesk.audit_exported", None, since=since_text
    )
    return _csv("umpass-audit.csv", rows, ["at", "actor", "action", "subject", "detail"])


@bp.get("/funnel")
@requires(ADMIN)
def funnel() -> ResponseReturnValue:
    rows = funnel_data.funnels(_svc())
    return render_template("helpdesk/funnel.html", rows=rows, stages=funnel_data.ORDER)


@bp.get("/recoveries")
@requires(ADMIN)
def recoveries() -> ResponseReturnValue:
    """Recoveries per week (unlocked, new password), the last 12 weeks, as a chart and a table."""
    weeks = recovery_data.weekly(_svc(), zone=plain.zone(_svc().settings.time_zone))
    peak = max([1, *(max(w.unlocked, w.reset) for w in weeks)])
    labels = [format_skeleton("MMMd", w.starts, locale=get_locale()) for w in weeks]
    return render_template("helpdesk/recoveries.html", weeks=weeks, peak=peak, labels=labels)


@bp.get("/funnel.csv")
@requires(ADMIN)
def funnel_csv() -> ResponseReturnValue:
    text = funnel_data.as_csv(funnel_data.funnels(_svc()))
    return Response(
        text,
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="umpass-funnel.csv"'},
    )


def _csv(name: str, rows: list[dict[str, str]], columns: list[str]) -> Response:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        # A cell starting with = + - @ is a formula to a spreadsheet: quote it.
        writer.writerow({k: safe_cell(v) for k, v in row.items()})
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )
