"""`umpass realm-check` run in the test process: its own code (the monitor's settings
from its environment, the live realm read through the monitor account, the result stored
and alerted on in one transaction), on the service's database, so a test can store a
result and then look at the page, the JSON and the gauges. The command line itself is
run as a process where that matters (tests/integration/test_realm_health.py)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select

from provider.config import load_settings
from provider.realm_health import command
from provider.realm_health.monitor import load_monitor_settings
from provider.realm_health.report import check_realm
from provider.services import Services
from provider.storage.models import RealmHealthCheck


class RealmCheck:
    def __init__(self, services: Services, monitor_env: dict[str, str]) -> None:
        self.services, self.env = services, monitor_env

    def __call__(self, to: str = "") -> tuple[int, str]:
        settings = load_settings(self.env)
        report = check_realm(settings, load_monitor_settings(self.env))
        return command.run(report, self.services.sessions, self.services.mailer, to)

    def age_all(self, by: timedelta) -> None:
        """Make every stored result `by` older (a timer that stopped that long ago)."""
        with self.services.sessions.begin() as db:
            for row in db.scalars(select(RealmHealthCheck)):
                row.checked_at = row.checked_at - by

    def forget_all(self) -> None:
        """No stored result at all (a service whose timer never ran)."""
        with self.services.sessions.begin() as db:
            db.execute(delete(RealmHealthCheck))
