"""The realm's health as Prometheus gauges, from the latest stored result.

`umpass_realm_check_up`: 1 when a result younger than UMPASS_REALM_HEALTH_STALE_AFTER
could read the realm (0: never checked, stale, or unreadable; then the next two are
absent); `umpass_realm_drift_items`: writes `apply` would make; `umpass_realm_failed_checks`:
must-keep settings that are red; `umpass_realm_check_age_seconds`: how old the latest
stored result is (absent when there is none).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from provider.realm_health.stored import HealthStatus


class RealmHealthCollector(Collector):
    def __init__(self, health: Callable[[], HealthStatus]) -> None:
        self.health = health

    def collect(self) -> Iterator[GaugeMetricFamily]:
        health = self.health()
        yield GaugeMetricFamily(
            "umpass_realm_check_up",
            "1 when umpass realm-check read the realm recently enough (not stale)",
            value=1 if health.up else 0,
        )
        if health.checked_at is not None:
            yield GaugeMetricFamily(
                "umpass_realm_check_age_seconds",
                "Age of the latest stored realm-health result",
                value=(health.now - health.checked_at).total_seconds(),
            )
        if not health.up or health.row is None:
            return
        yield GaugeMetricFamily(
            "umpass_realm_drift_items",
            "Writes python -m keycloak_config.apply would make to the realm (drift)",
            value=health.row.drift_items,
        )
        yield GaugeMetricFamily(
            "umpass_realm_failed_checks",
            "Settings the university must keep that are wrong (red on the health page)",
            value=health.row.failed_checks,
        )
