"""The realm's health as Prometheus gauges, for an alert rule beside the email.

`umpass_realm_drift_items`: writes `apply` would make now; `umpass_realm_failed_checks`:
must-keep settings that are red; `umpass_realm_check_up`: 1 when the realm could be read
(0: the two above are absent, the monitor account could not read it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from provider.realm_health.report import HealthReport


class RealmHealthCollector(Collector):
    def __init__(self, report: Callable[[], HealthReport]) -> None:
        self.report = report

    def collect(self) -> Iterator[GaugeMetricFamily]:
        report = self.report()
        yield GaugeMetricFamily(
            "umpass_realm_check_up",
            "1 when the realm-health check could read the realm",
            value=0 if report.error else 1,
        )
        if report.error:
            return
        yield GaugeMetricFamily(
            "umpass_realm_drift_items",
            "Writes python -m keycloak_config.apply would make to the realm now (drift)",
            value=len(report.drift),
        )
        yield GaugeMetricFamily(
            "umpass_realm_failed_checks",
            "Settings the university must keep that are wrong now (red on the health page)",
            value=len(report.failed_checks),
        )
