"""User IDs locked out of the identify step now, for the console's list and for
Prometheus: an attack on an intake shows as many IDs locked within the hour.

Only the user ID is ever shown: a lock on typing that is not a user ID (which may be an
ID number typed into the wrong box) is counted but not spelled out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from provider import audit
from provider.proofing import normalize_user_id
from provider.services import Services
from provider.storage.models import AuditEvent, IdentifyLockout, Student

RECENT = timedelta(hours=1)  # "locked within the last hour": the mass-lockout banner
LIST_LIMIT = 500  # rows on the page; the counts above it are always complete
NOT_ENROLLED = "(not enrolled)"  # an intake label: a typed ID this service never enrolled


@dataclass(frozen=True)
class LockedId:
    user_id: str | None  # None: the typing was not a user ID (never shown)
    locked_at: datetime | None  # None for a lock from before this was recorded
    locked_until: datetime
    in_a_row: int
    enrolled: bool


@dataclass(frozen=True)
class Overview:
    rows: list[LockedId]
    locked_now: int
    locked_recently: int
    threshold: int
    by_intake: dict[str, int] = field(default_factory=dict)

    @property
    def mass_lockout(self) -> bool:
        return self.locked_recently > self.threshold


def overview(svc: Services, now: datetime | None = None) -> Overview:
    now = now or datetime.now(UTC)
    locked = IdentifyLockout.locked_until > now
    with svc.reads() as session:
        rows = session.execute(
            select(IdentifyLockout, Student.user_id.is_not(None))
            .outerjoin(Student, Student.user_id == IdentifyLockout.user_id)
            .where(locked)
            .order_by(
                IdentifyLockout.locked_at.desc().nulls_last(),
                IdentifyLockout.locked_until.desc(),
            )
            .limit(LIST_LIMIT)
        ).all()
        recently = session.scalar(
            select(func.count())
            .select_from(IdentifyLockout)
            .where(IdentifyLockout.locked_at > now - RECENT)
        )
    by_intake = _locked_by_intake(svc, now)
    length = svc.settings.user_id_length
    return Overview(
        rows=[
            LockedId(
                user_id=normalize_user_id(row.user_id, length),
                locked_at=row.locked_at,
                locked_until=row.locked_until,
                in_a_row=row.lock_count,
                enrolled=bool(enrolled),
            )
            for row, enrolled in rows
            if row.locked_until is not None
        ],
        locked_now=sum(by_intake.values()),
        locked_recently=recently or 0,
        threshold=svc.settings.mass_lockout_threshold,
        by_intake=by_intake,
    )


def _intake_label(enrolled: object, intake: str | None) -> str:
    return (intake or "(none)") if enrolled else NOT_ENROLLED


def _locked_by_intake(svc: Services, now: datetime) -> dict[str, int]:
    with svc.reads() as session:
        counted = session.execute(
            select(Student.user_id.is_not(None), Student.intake, func.count())
            .select_from(IdentifyLockout)
            .outerjoin(Student, Student.user_id == IdentifyLockout.user_id)
            .where(IdentifyLockout.locked_until > now)
            .group_by(Student.user_id.is_not(None), Student.intake)
        ).all()
    totals: Counter[str] = Counter()
    for enrolled, intake, n in counted:
        totals[_intake_label(enrolled, intake)] += n
    return dict(sorted(totals.items()))


def _started_by_intake(svc: Services) -> dict[str, int]:
    """Locks ever started (as far as the audit log reaches back), per intake."""
    with svc.reads() as session:
        counted = session.execute(
            select(Student.user_id.is_not(None), Student.intake, func.count())
            .select_from(AuditEvent)
            .outerjoin(Student, Student.user_id == AuditEvent.subject)
            .where(AuditEvent.action == audit.LOCK_STARTED)
            .group_by(Student.user_id.is_not(None), Student.intake)
        ).all()
    totals: Counter[str] = Counter()
    for enrolled, intake, n in counted:
        totals[_intake_label(enrolled, intake)] += n
    return dict(sorted(totals.items()))


class LockoutCollector(Collector):
    """Read at each scrape, from the same rows as the console's list."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc

    def collect(self) -> Iterator[Metric]:
        now = datetime.now(UTC)
        view = overview(self.svc, now)
        active = GaugeMetricFamily(
            "umpass_identify_lockouts_active",
            "Typed user IDs locked out of the identify step now, by intake",
            labels=["intake"],
        )
        for intake, n in view.by_intake.items():
            active.add_metric([intake], n)
        yield active
        started = CounterMetricFamily(
            "umpass_identify_lockouts_started",
            "Identify locks started, by intake (from the audit log, so it keeps its retention)",
            labels=["intake"],
        )
        for intake, n in _started_by_intake(self.svc).items():
            started.add_metric([intake], n)
        yield started
        yield GaugeMetricFamily(
            "umpass_identify_lockouts_recent",
            "Typed user IDs whose latest lock started within the last hour",
            value=view.locked_recently,
        )
        yield GaugeMetricFamily(
            "umpass_identify_mass_lockout",
            "1 while more user IDs were locked within the hour than "
            "UMPASS_MASS_LOCKOUT_THRESHOLD (the console's banner), else 0",
            value=int(view.mass_lockout),
        )
