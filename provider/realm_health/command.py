"""`umpass realm-check`: the scheduled check (cron or a systemd timer).

Prints the report, exits 0 when the realm is healthy, 1 when it has drifted or a check
failed, 2 when it could not be read; emails the alert address when a problem appears that
the last run did not see (`alert.py`).
"""

from __future__ import annotations

from pathlib import Path

from flask_babel import force_locale

from provider.delivery import DeliveryFailed, EmailMessage, Mailer
from provider.realm_health import alert
from provider.realm_health.checks import REPAIR
from provider.realm_health.report import HealthReport

DEFAULT_STATE = Path("var/realm-check.json")


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


def run(report: HealthReport, mailer: Mailer, to: str, state: Path) -> tuple[int, str]:
    """The exit status and what was done about the alert (one line)."""
    status = 2 if report.error else (0 if report.healthy else 1)
    decision = alert.decide(alert.read_state(state), report.problem_keys())
    if not decision.send:
        alert.write_state(state, decision.current)
        return status, "no new problem: no email"
    if not to:
        alert.write_state(state, decision.current)
        return status, "new problems, but no address to tell (UMPASS_REALM_ALERT_EMAIL)"
    try:
        mailer.send(alert_email(report, decision.new, to))
    except DeliveryFailed:
        # Not remembered: the next run mails the same problems again.
        return max(status, 2), "the alert email could not be sent: will try again next run"
    alert.write_state(state, decision.current)
    return status, f"alert emailed ({len(decision.new)} new)"
