"""Self-service recoveries, counted from the audit log: per week for the console's chart,
and as Prometheus counters.

A recovery is counted once, when it ends (`recovery.unlocked` or `recovery.password_reset`,
each written once per flow). Weeks start on Monday in the help desk's time zone
(`UMPASS_TIME_ZONE`, as the timeline's times). The counters read the audit log
like the lockout counters do, so they keep its retention: a purge of old events looks like
a counter reset to Prometheus, which `rate()` and `increase()` take in their stride.
No label carries a user ID or anything typed: only outcomes, channels and reasons.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from provider.services import Services
from provider.storage.models import AuditEvent

WEEKS = 12
# outcome label -> the audit action that ends a recovery that way
OUTCOMES = {"unlocked": "recovery.unlocked", "reset": "recovery.password_reset"}


@dataclass(frozen=True)
class Week:
    starts: date  # a Monday
    unlocked: int
    reset: int

    @property
    def total(self) -> int:
        return self.unlocked + self.reset


def monday_of(day: date) -> date:
    return day - timedelta(days=day.weekday())


def weekly(
    svc: Services, now: datetime | None = None, weeks: int = WEEKS, zone: tzinfo = UTC
) -> list[Week]:
    """The last `weeks` weeks in `zone`, oldest first, the current (unfinished) week last."""
    now = now or datetime.now(UTC)
    first = monday_of(now.astimezone(zone).date()) - timedelta(weeks=weeks - 1)
    since = datetime.combine(first, time(), tzinfo=zone)
    counts = {first + timedelta(weeks=n): dict.fromkeys(OUTCOMES, 0) for n in range(weeks)}
    outcome_of = {action: outcome for outcome, action in OUTCOMES.items()}
    with svc.reads() as session:
        # One row per recovery ended: a few per student per year, so fine to bucket here
        # (date arithmetic differs between SQLite and PostgreSQL).
        for at, action in session.execute(
            select(AuditEvent.at, AuditEvent.action).where(
                AuditEvent.action.in_(outcome_of), AuditEvent.at >= since
            )
        ):
            week = counts.get(monday_of(at.astimezone(zone).date()))
            if week is not None:  # an event stamped in the future stays out
                week[outcome_of[action]] += 1
    return [Week(starts, c["unlocked"], c["reset"]) for starts, c in counts.items()]


class RecoveriesCollector(Collector):
    """Read at each scrape: recoveries by outcome, codes sent by channel, codes not sent by
    reason, and locks after wrong tries."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc

    def collect(self) -> Iterator[Metric]:
        with self.svc.reads() as session:
            ended = dict(
                session.execute(
                    select(AuditEvent.action, func.count())
                    .where(AuditEvent.action.in_([*OUTCOMES.values(), "recovery.locked"]))
                    .group_by(AuditEvent.action)
                ).all()
            )
            sent = _by_detail(session, "recovery.code_sent", "channel")
            not_sent = _by_detail(session, "recovery.code_not_sent", "reason")
        recoveries = CounterMetricFamily(
            "umpass_recoveries",
            "Self-service recoveries completed, by outcome (unlocked, or a new password set)",
            labels=["outcome"],
        )
        for outcome, action in OUTCOMES.items():
            recoveries.add_metric([outcome], ended.get(action, 0))
        yield recoveries
        codes = CounterMetricFamily(
            "umpass_recovery_codes_sent",
            "Recovery codes sent to a verified contact, by channel (email, phone)",
            labels=["channel"],
        )
        for channel in ("email", "phone"):
            codes.add_metric([channel], sent.get(channel, 0))
        yield codes
        refused = CounterMetricFamily(
            "umpass_recovery_codes_not_sent",
            "Recovery starts for a known account that sent no code, by reason",
            labels=["reason"],
        )
        for reason, n in sorted(not_sent.items()):
            refused.add_metric([reason], n)
        yield refused
        yield CounterMetricFamily(
            "umpass_recovery_locks",
            "Recovery locks started after wrong codes (or dates of birth) in a row",
            value=ended.get("recovery.locked", 0),
        )


def _by_detail(session: Session, action: str, key: str) -> dict[str, int]:
    """How many `action` events per value of their detail `key`."""
    value = AuditEvent.detail[key].as_string()
    rows = session.execute(
        select(value, func.count()).where(AuditEvent.action == action).group_by(value)
    ).all()
    return {str(v): n for v, n in rows if v is not None}
