"""The activation funnel per intake: imported → started → each step → activated, plus
locked and expired; as rows (for the chart and the CSV) and as Prometheus metrics.

Counted from the audit log and the students table: each stage is the number of the
intake's students who ever reached it, so the numbers only grow and never double-count
a student who tried twice.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import and_, func, select

from provider.services import Services
from provider.spreadsheet import safe_cell
from provider.storage.models import ActivationCode, AuditEvent, Student

# (stage, the audit action that marks it)
STAGES = (
    ("started", "identify.ok"),
    ("policies_accepted", "step.contacts"),
    ("contacts_confirmed", "step.password"),
    ("activated", "account.activated"),
)
EXTRA = (("locked", "identify.locked"),)
ORDER = ("imported", *(s for s, _ in STAGES), "locked", "expired")


@dataclass(frozen=True)
class IntakeFunnel:
    intake: str
    counts: dict[str, int]

    def share(self, stage: str) -> float:
        imported = self.counts.get("imported", 0)
        return self.counts.get(stage, 0) / imported if imported else 0.0


def funnels(svc: Services, now: datetime | None = None) -> list[IntakeFunnel]:
    now = now or datetime.now(UTC)
    counts: dict[str, dict[str, int]] = {}
    actions = {action: stage for stage, action in (*STAGES, *EXTRA)}
    with svc.reads() as session:
        for intake, n in session.execute(
            select(Student.intake, func.count()).group_by(Student.intake)
        ):
            counts.setdefault(intake or "(none)", {})["imported"] = n
        for intake, action, n in session.execute(
            select(Student.intake, AuditEvent.action, func.count(func.distinct(AuditEvent.subject)))
            .join(AuditEvent, AuditEvent.subject == Student.user_id)
            .where(AuditEvent.action.in_(actions))
            .group_by(Student.intake, AuditEvent.action)
        ):
            counts.setdefault(intake or "(none)", {})[actions[action]] = n
        # Expired: every code the student was given has run out unused, and none was used.
        used = select(ActivationCode.user_id).where(ActivationCode.used_at.is_not(None))
        live = select(ActivationCode.user_id).where(
            and_(
                ActivationCode.used_at.is_(None),
                ActivationCode.revoked_at.is_(None),
                ActivationCode.expires_at > now,
            )
        )
        for intake, n in session.execute(
            select(Student.intake, func.count(func.distinct(Student.user_id)))
            .join(ActivationCode, ActivationCode.user_id == Student.user_id)
            .where(Student.user_id.not_in(used), Student.user_id.not_in(live))
            .group_by(Student.intake)
        ):
            counts.setdefault(intake or "(none)", {})["expired"] = n
    return [
        IntakeFunnel(intake, {stage: c.get(stage, 0) for stage in ORDER})
        for intake, c in sorted(counts.items())
    ]


def as_csv(rows: list[IntakeFunnel]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["intake", *ORDER])
    for row in rows:
        writer.writerow([safe_cell(row.intake), *(row.counts[s] for s in ORDER)])
    return out.getvalue()


class FunnelCollector(Collector):
    """Read at each scrape: the same numbers as the chart and the CSV."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc

    def collect(self):  # noqa: ANN201 - prometheus_client's protocol
        gauge = GaugeMetricFamily(
            "umpass_activation_funnel_students",
            "Students of each intake who reached each stage of activation",
            labels=["intake", "stage"],
        )
        for row in funnels(self.svc):
            for stage in ORDER:
                gauge.add_metric([row.intake, stage], row.counts[stage])
        yield gauge
