"""/helpdesk/realm-health: the report for `activation-admin` staff, read anew each time.

A page of plain HTML (no script): each check with a word, not only a colour, for its
state; the drift as a list; the command that repairs both.
"""

from __future__ import annotations

from flask import Blueprint, Flask, current_app, render_template
from flask.typing import ResponseReturnValue

from provider import audit
from provider.helpdesk.auth import ADMIN, requires, staff
from provider.helpdesk.views import console_context
from provider.realm_health.checks import REPAIR
from provider.realm_health.report import ReportCache
from provider.services import services

CACHE_KEY = "umpass.realm_health"
bp = Blueprint("realm_health", __name__, url_prefix="/helpdesk")
bp.context_processor(console_context)  # the console's nav, staff name and clock


def install(app: Flask, cache_seconds: float, *, page: bool) -> None:
    """The report cache (the JSON and gauges use it too); the page only with the console."""
    app.extensions[CACHE_KEY] = ReportCache(cache_seconds)
    if page:
        app.config["UMPASS_REALM_HEALTH_PAGE"] = True  # the console's nav links to it
        app.register_blueprint(bp)


def cache(app: Flask) -> ReportCache:
    return app.extensions[CACHE_KEY]


@bp.get("/realm-health")
@requires(ADMIN)
def page() -> ResponseReturnValue:
    svc = services(current_app)
    report = cache(current_app).get(svc.settings, fresh=True)
    who = staff()
    audit.record_now(
        svc.sessions,
        f"staff:{who['username'] if who else '?'}",
        "helpdesk.realm_health_viewed",
        None,
        drift=len(report.drift),
        failed=len(report.failed_checks),
    )
    html = render_template("helpdesk/realm_health.html", report=report, repair=REPAIR)
    return html, 200, {"Cache-Control": "no-store"}
