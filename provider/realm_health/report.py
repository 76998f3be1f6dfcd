"""One realm-health report: the drift and the checks, read together by `umpass
realm-check` through the monitor account, then stored (stored.py) for the web service
to show; the web service never builds one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask_babel import force_locale
from keycloak.exceptions import KeycloakError
from requests import RequestException

from provider.config import Settings
from provider.realm_health.checks import CheckResult, run_checks
from provider.realm_health.drift import DriftItem, DriftUnreadable, drift
from provider.realm_health.monitor import MonitorSettings, monitor_api
from provider.realm_health.texts import REPAIR

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HealthReport:
    realm: str
    checked_at: datetime
    checks: list[CheckResult] = field(default_factory=list)
    drift: list[DriftItem] = field(default_factory=list)
    error: str = ""  # the realm could not be read at all (then nothing above is known)

    @property
    def failed_checks(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.ok]

    @property
    def healthy(self) -> bool:
        return not self.error and not self.drift and not self.failed_checks

    def problem_keys(self) -> set[str]:
        """What is wrong, as stable keys: the alert compares them between runs."""
        if self.error:
            return {"error:unreadable"}
        return {d.key for d in self.drift} | {c.problem_key for c in self.failed_checks}

    def as_json(self) -> dict[str, Any]:
        with force_locale("en"):  # monitoring reads English whatever the caller's language
            return {
                "realm": self.realm,
                "checked_at": self.checked_at.isoformat(),
                "healthy": self.healthy,
                "error": self.error or None,
                "drift_items": len(self.drift),
                "failed_checks": len(self.failed_checks),
                "repair": REPAIR,
                "checks": [
                    {
                        "key": c.key,
                        "title": str(c.title),
                        "ok": c.ok,
                        "status": "OK" if c.ok else "Needs repair",
                        "why": str(c.why),
                        "found": c.found or None,
                    }
                    for c in self.checks
                ],
                "drift": [_drift_json(d) for d in self.drift],
            }


def _drift_json(item: DriftItem) -> dict[str, Any]:
    """The plan's words (action, subject, detail) and, for the page to word them in its
    reader's language, the parts: `item` (keycloak_config.plan.ITEMS), `name`, `part`,
    `old`, `new`, `why` (None when the change has none)."""
    return {
        "action": item.action,
        "subject": item.subject,
        "detail": item.detail,
        "item": item.item or None,
        "name": item.name or None,
        "part": item.part or None,
        "old": item.old,
        "new": item.new,
        "why": item.why or None,
    }


def check_realm(settings: Settings, monitor: MonitorSettings) -> HealthReport:
    """Read the realm now. Never raises for an unreadable realm: the report says so."""
    realm = settings.keycloak.realm
    now = datetime.now(UTC)
    try:
        reader = monitor_api(settings, monitor)
        items = drift(settings, monitor, reader)
        results = run_checks(reader, settings, monitor)
    except DriftUnreadable as exc:
        log.warning("realm health: plan failed", extra={"reason": "apply refused"})
        return HealthReport(realm, now, error=str(exc))
    except (KeycloakError, RequestException) as exc:
        log.warning("realm health: realm unreadable", extra={"reason": type(exc).__name__})
        return HealthReport(
            realm,
            now,
            error=f"Keycloak did not answer the monitor account ({type(exc).__name__}): check "
            "UMPASS_KC_MONITOR_SECRET and that apply has created umpass-realm-monitor",
        )
    return HealthReport(realm, now, results, items)
