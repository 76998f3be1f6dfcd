"""User IDs locked out now, for the console's list and for Prometheus: an attack on an
intake shows as many IDs locked within the hour.

Two doors lock, in the one counter table: identify (activation), keyed by the typed user
ID, and recovery's wrong codes, keyed `r/<user ID>` (`lockout.recovery_key`). Each door is
counted on its own, against the same threshold: a student locked at both doors is one
lock at each, not two at either, and the identify figures (and their metrics) mean what
they meant before recovery existed.

Only the user ID is ever shown: a lock on typing that is not a user ID (which may be an
ID number, or an email address, typed into the wrong box) is counted but not spelled out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import ColumnElement, case, func, select

from provider import audit
from provider.guards.lockout import RECOVERY_PREFIX
from provider.proofing import normalize_user_id
from provider.services import Services
from provider.storage.models import AuditEvent, IdentifyLockout, Student

RECENT = timedelta(hours=1)  # "locked within the last hour": the mass-lockout banner
LIST_LIMIT = 500  # rows on the page; the counts above it are always complete
NOT_ENROLLED = "(not enrolled)"  # an intake label: a typed ID this service never enrolled

Door = Literal["identify", "recovery"]
IS_RECOVERY = IdentifyLockout.user_id.startswith(RECOVERY_PREFIX)
# The user ID (or typing) a row is about, whichever door locked it.
SUBJECT = case(
    (IS_RECOVERY, func.substr(IdentifyLockout.user_id, len(RECOVERY_PREFIX) + 1)),
    else_=IdentifyLockout.user_id,
)


@dataclass(frozen=True)
class LockedId:
    user_id: str | None  # None: the typing was not a user ID (never shown)
    locked_at: datetime | None  # None for a lock from before this was recorded
    locked_until: datetime
    in_a_row: int
    enrolled: bool
    door: Door = "identify"


@dataclass(frozen=True)
class Overview:
    rows: list[LockedId]  # both doors, newest first
    locked_now: int  # identify's, as every figure without "recovery" in its name
    locked_recently: int
    threshold: int
    by_intake: dict[str, int] = field(default_factory=dict)
    recovery_locked_now: int = 0
    recovery_locked_recently: int = 0

    @property
    def mass_lockout(self) -> bool:
        return self.locked_recently > self.threshold

    @property
    def recovery_mass_lockout(self) -> bool:
        return self.recovery_locked_recently > self.threshold


def overview(svc: Services, now: datetime | None = None) -> Overview:
    now = now or datetime.now(UTC)
    locked = IdentifyLockout.locked_until > now
    with svc.reads() as session:
        rows = session.execute(
            select(IdentifyLockout, Student.user_id.is_not(None), IS_RECOVERY)
            .outerjoin(Student, Student.user_id == SUBJECT)
            .where(locked)
            .order_by(
                IdentifyLockout.locked_at.desc().nulls_last(),
                IdentifyLockout.locked_until.desc(),
            )
            .limit(LIST_LIMIT)
        ).all()
        recent = IdentifyLockout.locked_at > now - RECENT

        def count(*where: ColumnElement[bool]) -> int:
            return session.scalar(select(func.count()).where(*where)) or 0

        recently, recovery_recently = count(recent, ~IS_RECOVERY), count(recent, IS_RECOVERY)
        recovery_now = count(locked, IS_RECOVERY)
    by_intake = _locked_by_intake(svc, now)
    length = svc.settings.user_id_length
    return Overview(
        rows=[
            LockedId(
                user_id=normalize_user_id(
                    row.user_id.removeprefix(RECOVERY_PREFIX) if recovery else row.user_id,
                    length,
                ),
                locked_at=row.locked_at,
                locked_until=row.locked_until,
                in_a_row=row.lock_count,
                enrolled=bool(enrolled),
                door="recovery" if recovery else "identify",
            )
            for row, enrolled, recovery in rows
            if row.locked_until is not None
        ],
        locked_now=sum(by_intake.values()),
        locked_recently=recently,
        threshold=svc.settings.mass_lockout_threshold,
        by_intake=by_intake,
        recovery_locked_now=recovery_now,
        recovery_locked_recently=recovery_recently,
    )


def _intake_label(enrolled: object, intake: str | None) -> str:
    return (intake or "(none)") if enrolled else NOT_ENROLLED


def _locked_by_intake(svc: Services, now: datetime) -> dict[str, int]:
    with svc.reads() as session:
        counted = session.execute(
            select(Student.user_id.is_not(None), Student.intake, func.count())
            .select_from(IdentifyLockout)
            .outerjoin(Student, Student.user_id == IdentifyLockout.user_id)
            .where(IdentifyLockout.locked_until > now, ~IS_RECOVERY)
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
        yield GaugeMetricFamily(
            "umpass_recovery_lockouts_active",
            "Accounts (or typed user IDs) locked out of recovery now, after wrong codes",
            value=view.recovery_locked_now,
        )
        yield GaugeMetricFamily(
            "umpass_recovery_lockouts_recent",
            "Accounts (or typed user IDs) whose latest recovery lock started within the last hour",
            value=view.recovery_locked_recently,
        )
