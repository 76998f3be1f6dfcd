"""The console's policy pages (activation-admin only): each version with how many students
accepted it and how many still must, a CSV of the evidence per version, and publishing a
newer version (asked twice; audited under the admin's username)."""

from __future__ import annotations

import csv
import io

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from provider import audit
from provider.helpdesk.auth import ADMIN, requires, staff
from provider.helpdesk.views import console_context
from provider.i18n import select_locale
from provider.policies import documents, find
from provider.policies import evidence as evidence_data
from provider.policies.published import PublishRefused, current_versions, publish
from provider.services import Services, services
from provider.spreadsheet import safe_cell

bp = Blueprint("helpdesk_policies", __name__, url_prefix="/helpdesk/policies")
bp.context_processor(console_context)
NO_STORE = {"Cache-Control": "no-store"}


def _svc() -> Services:
    return services(current_app)


def _actor() -> str:
    who = staff()
    return f"staff:{who['username'] if who else '?'}"


@bp.get("/")
@requires(ADMIN)
def overview() -> ResponseReturnValue:
    svc = _svc()
    with svc.reads() as db:
        counts = evidence_data.counts(db, documents())
        now = current_versions(db)
    by_policy: dict[str, list[evidence_data.VersionCount]] = {}
    for row in counts:
        by_policy.setdefault(row.policy.id, []).append(row)
    page = render_template("helpdesk/policies.html", by_policy=by_policy, now=now)
    return page, 200, NO_STORE


@bp.get("/<policy_id>/<version>.csv")
@requires(ADMIN)
def evidence_csv(policy_id: str, version: str) -> ResponseReturnValue:
    """Who accepted this version, and when: user ID, version, time (UTC)."""
    policy = find(policy_id, version)
    if policy is None:
        abort(404)
    svc = _svc()
    with svc.reads() as db:
        rows = evidence_data.acceptances(db, policy_id, version)
    audit.record_now(
        svc.sessions, _actor(), "policy.evidence_exported", None, policy=policy_id, version=version
    )
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["user_id", "version", "accepted_at"])
    for row in rows:
        at = row.accepted_at.isoformat(timespec="seconds").replace("+00:00", "Z")
        # A cell starting with = + - @ is a formula to a spreadsheet: quoted.
        writer.writerow([safe_cell(row.user_id), safe_cell(policy.key), safe_cell(at)])
    name = f"umpass-{policy_id}-{version}-acceptances.csv"
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"', **NO_STORE},
    )


@bp.post("/<policy_id>/<version>/publish")
@requires(ADMIN)
def publish_version(policy_id: str, version: str) -> ResponseReturnValue:
    """First a question (every student will have to accept it), then, with confirm=yes,
    the publication."""
    policy = find(policy_id, version)
    if policy is None:
        abort(404)
    if request.form.get("confirm") != "yes":
        return render_template("helpdesk/confirm_publish.html", policy=policy), 200, NO_STORE
    try:
        publish(_svc().sessions, policy_id, version, _actor())
    except PublishRefused as refused:
        flash(_("Not published: %(why)s.", why=str(refused)))
    else:
        flash(
            _(
                "Version %(version)s of “%(title)s” is published: students activating from "
                "now on accept it, and active students accept it the next time they sign in.",
                version=version,
                title=policy.title_in(select_locale()),
            )
        )
    return redirect(url_for("helpdesk_policies.overview"), 303)
