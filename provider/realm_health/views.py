"""/helpdesk/realm-health: the latest stored result for `activation-admin` staff.

The page never reads the realm: `umpass realm-check` (on the one host that holds the
monitor's secret) stores each result, and this shows the latest, when it was checked, and
red "not checked since" when that is older than UMPASS_REALM_HEALTH_STALE_AFTER. There is
no "check now" button: it would need that secret here.

A page of plain HTML (no script): each check with a word, not only a colour, for its
state; the drift as a list; the command that repairs both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, current_app, render_template
from flask.typing import ResponseReturnValue
from markupsafe import Markup, escape

from provider import audit
from provider.helpdesk.auth import ADMIN, requires, staff
from provider.helpdesk.views import console_context
from provider.realm_health import stored
from provider.realm_health.texts import DRIFT_ACTIONS, DRIFT_ITEMS, NO_VALUE, REPAIR, TEXTS
from provider.services import services
from provider.storage.models import utcnow

CHECK = "umpass realm-check"
bp = Blueprint("realm_health", __name__, url_prefix="/helpdesk")
bp.context_processor(console_context)  # the console's nav, staff name and clock


def install(app: Flask) -> None:
    app.config["UMPASS_REALM_HEALTH_PAGE"] = True  # the console's nav links to it
    app.register_blueprint(bp)


def current() -> stored.HealthStatus:
    """The latest stored result, as of now (the page, the JSON and the gauges)."""
    svc = services(current_app)
    with svc.reads() as db:
        return stored.status(
            db,
            svc.settings.keycloak.realm,
            utcnow(),
            svc.settings.realm_health.stale_after_minutes,
        )


@dataclass(frozen=True)
class ShownCheck:
    key: str
    title: Any
    why: Any
    ok: bool
    found: str


def _shown(result: dict[str, Any]) -> list[ShownCheck]:
    """The stored checks in the request's language (by key; a key this version does not
    know keeps the English the command stored)."""
    out = []
    for check in result.get("checks") or []:
        title, why = TEXTS.get(check["key"], (check.get("title", ""), check.get("why", "")))
        out.append(
            ShownCheck(check["key"], title, why, bool(check["ok"]), check.get("found") or "")
        )
    return out


@dataclass(frozen=True)
class ShownDrift:
    """One stored drift line. `line` is the sentence in the request's language, or None
    for a row stored before the parts were (or with an action or item this version does
    not word): the template then shows the plan's English subject and detail."""

    action: str
    item: str
    subject: str
    detail: str
    line: Markup | None
    values: tuple[str, str] | None  # (old, new), as the plan prints them
    why: str  # apply's own English, a secondary detail


def _code(text: str) -> Markup:
    return Markup("<code>%s</code>") % text


def _worded(entry: dict[str, Any]) -> Markup | None:
    sentence, phrase = DRIFT_ACTIONS.get(entry["action"]), DRIFT_ITEMS.get(entry.get("item") or "")
    if sentence is None or phrase is None:
        return None
    names = {"name": _code(entry.get("name") or ""), "part": _code(entry.get("part") or "")}
    # The translation is ours and plain text: escaped, then the names go in as markup.
    item = escape(str(phrase)) % names
    return escape(str(sentence)) % {"item": item}


def _drift(result: dict[str, Any]) -> list[ShownDrift]:
    out = []
    for entry in result.get("drift") or []:
        old, new = entry.get("old"), entry.get("new")
        values = None
        if old is not None or new is not None:
            values = (str(NO_VALUE) if old is None else old, str(NO_VALUE) if new is None else new)
        out.append(
            ShownDrift(
                entry["action"],
                entry.get("item") or "",
                entry.get("subject", ""),
                entry.get("detail") or "",
                _worded(entry),
                values,
                entry.get("why") or "",
            )
        )
    return out


@bp.get("/realm-health")
@requires(ADMIN)
def page() -> ResponseReturnValue:
    svc = services(current_app)
    health = current()
    result = health.result
    checks = _shown(result)
    who = staff()
    audit.record_now(
        svc.sessions,
        f"staff:{who['username'] if who else '?'}",
        "helpdesk.realm_health_viewed",
        None,
        status=health.status,
        drift=result.get("drift_items"),
        failed=result.get("failed_checks"),
    )
    html = render_template(
        "helpdesk/realm_health.html",
        health=health,
        result=result,
        checks=checks,
        failed=[c for c in checks if not c.ok],
        drift=_drift(result),
        stale_minutes=round(health.stale_after.total_seconds() / 60),
        repair=REPAIR,
        check_command=CHECK,
    )
    return html, 200, {"Cache-Control": "no-store"}
