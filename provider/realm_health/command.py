"""`umpass realm-check`: the scheduled check (cron or a systemd timer).

Run on ONE host, the only one holding UMPASS_KC_MONITOR_SECRET (monitor.py). Reads the
realm, prints the report, stores it in the service's database for the web service to
show (stored.py), emails the alert address when a problem appears that the previous
stored result had not told (`alert.py`), and prunes the stored history. Exits 0 when the
realm is healthy, 1 when it has drifted or a check failed, 2 when it could not be read.
"""

from __future__ import annotations

from flask_babel import force_locale
from sqlalchemy.orm import Session, sessionmaker

from provider.delivery import DeliveryFailed, EmailMessage, Mailer
from provider.realm_health import alert, stored
from provider.realm_health.report import HealthReport
from provider.realm_health.texts import REPAIR
from provider.storage.locks import serialise
from provider.storage.models import RealmHealthCheck


def render(report: HealthReport) -> str:
    if report.error:
        return f"realm {report.realm}: could not be checked: {report.error}"
    with force_locale("en"):
        lines = [f"realm {report.realm}, checked {report.checked_at:%Y-%m-%d %H:%M} UTC"]
        lines += [
            f"  [{'OK' if c.ok else 'Needs repair'}] {c.title}"
            + (f" ({c.found})" if c.found else "")
            for c in report.checks
        ]
    if report.drift:
        lines.append(f"Drift: apply would make {len(report.drift)} changes:")
        lines += [
            f"  - {d.action} {d.subject}" + (f": {d.detail}" if d.detail else "")
            for d in report.drift
        ]
    else:
        lines.append("Drift: none, the realm is as keycloak_config/ says.")
    if not report.healthy:
        lines.append(f"To repair: {REPAIR} --plan, read it, then {REPAIR}")
    return "\n".join(lines)


def alert_email(report: HealthReport, new: frozenset[str], to: str) -> EmailMessage:
    text = (
        f"The realm {report.realm} needs repair: {len(new)} new "
        f"problem{'s' * (len(new) != 1)} since the last check.\n\n"
        + "\n".join(f"New: {key}" for key in sorted(new))
        + "\n\n"
        + render(report)
        + "\n"
    )
    html = "<pre>" + _escape(text) + "</pre>"
    return EmailMessage(to, f"UMPASS realm {report.realm} needs repair", text, html)


def _escape(text: str) -> str:
    from html import escape

    return escape(text)


LOCK = "realm-health-check"


def run(
    report: HealthReport,
    sessions: sessionmaker[Session],
    mailer: Mailer,
    to: str,
    *,
    keep_rows: int = stored.KEEP_ROWS,
    keep_days: int = stored.KEEP_DAYS,
) -> tuple[int, str]:
    """Store the report, alert on what the previous stored result had not told, prune the
    history: one transaction, serialised (PostgreSQL: an advisory lock; SQLite: BEGIN
    IMMEDIATE), so two runs at once read each other's result and mail once. The exit
    status and what was done about the alert (one line)."""
    status = 2 if report.error else (0 if report.healthy else 1)
    with sessions.begin() as db:
        serialise(db, LOCK)
        previous = stored.latest(db)
        told = frozenset(previous.told) if previous else None
        decision = alert.decide(told, report.problem_keys())
        remembered = decision.current
        if not decision.send:
            note = "no new problem: no email"
        elif not to:
            note = "new problems, but no address to tell (UMPASS_REALM_ALERT_EMAIL)"
        else:
            try:
                mailer.send(alert_email(report, decision.new, to))
                note = f"alert emailed ({len(decision.new)} new)"
            except DeliveryFailed:
                # Not remembered as told: the next run mails the same problems again.
                remembered = told or frozenset()
                status = max(status, 2)
                note = "the alert email could not be sent: will try again next run"
        db.add(
            RealmHealthCheck(
                checked_at=report.checked_at,
                realm=report.realm,
                readable=not report.error,
                healthy=report.healthy,
                drift_items=len(report.drift),
                failed_checks=len(report.failed_checks),
                problems=sorted(decision.current),
                told=sorted(remembered),
                result=report.as_json(),
            )
        )
        db.flush()
        stored.prune(db, report.checked_at, keep_rows=keep_rows, keep_days=keep_days)
    return status, note
