"""The service's daily text-message budget, and the daily counts of refused code sends.

One `send_days` row per UTC day. A code by text takes one unit of the day's budget inside
the transaction that issues the code, with a single conditional UPDATE (`sms_sent <
budget`): on PostgreSQL a parallel reservation waits on the row and re-checks the
condition against the committed count, so replicas together never pass the budget. A
failed delivery gives its unit back. Notices to a replaced number are counted after they
are sent but never refused: at most one per proven new number, and silence would hide a
takeover. The counts are read by /metrics; they hold no personal data.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from provider.storage.engine import insert_unless_present
from provider.storage.models import SendDay

STUDENT_CAP = "student_cap"
SMS_BUDGET = "sms_budget"
_REFUSED = {
    STUDENT_CAP: SendDay.refused_student_cap,
    SMS_BUDGET: SendDay.refused_sms_budget,
}


def day_of(now: datetime) -> date:
    return now.astimezone(UTC).date()


def until_next_day(now: datetime) -> timedelta:
    """How long until the budget starts again (midnight UTC)."""
    tomorrow = datetime.combine(day_of(now) + timedelta(days=1), datetime.min.time(), UTC)
    return tomorrow - now


def _ensure_day(session: Session, day: date) -> None:
    """Create the day's row unless it exists; a parallel creator is waited for, not
    failed on (ON CONFLICT DO NOTHING, on both databases)."""
    session.execute(
        insert_unless_present(session.get_bind().dialect.name, SendDay, "day").values(
            day=day, sms_sent=0, refused_student_cap=0, refused_sms_budget=0
        )
    )


def _add(session: Session, day: date, column: InstrumentedAttribute[int], n: int) -> None:
    _ensure_day(session, day)
    session.execute(update(SendDay).where(SendDay.day == day).values({column: column + n}))


def reserve(session: Session, now: datetime, budget: int) -> date | None:
    """Take one text from today's budget in the caller's transaction: the day it counts
    on, or None when the budget is spent (then nothing changed)."""
    day = day_of(now)
    _ensure_day(session, day)
    taken = session.execute(
        update(SendDay)
        .where(SendDay.day == day, SendDay.sms_sent < budget)
        .values(sms_sent=SendDay.sms_sent + 1)
    )
    return day if taken.rowcount == 1 else None  # type: ignore[attr-defined]


def give_back(session: Session, day: date) -> None:
    """A text that was not delivered: its unit goes back to the day it was taken from."""
    session.execute(
        update(SendDay)
        .where(SendDay.day == day, SendDay.sms_sent > 0)
        .values(sms_sent=SendDay.sms_sent - 1)
    )


def count_text(sessions: sessionmaker[Session], now: datetime) -> None:
    """A text sent outside the budget's refusals (a notice): counted all the same."""
    with sessions.begin() as session:
        _add(session, day_of(now), SendDay.sms_sent, 1)


def count_refusal(session: Session, now: datetime, reason: str) -> None:
    _add(session, day_of(now), _REFUSED[reason], 1)


def sent_on(session: Session, day: date) -> int:
    row = session.get(SendDay, day)
    return row.sms_sent if row is not None else 0


class SendsCollector(Collector):
    """Read at each scrape, from the database: the same numbers on every replica."""

    def __init__(self, reads: sessionmaker[Session], budget: int) -> None:
        self.reads = reads
        self.budget = budget

    def collect(self) -> Iterator[Metric]:
        with self.reads() as session:
            sent = sent_on(session, day_of(datetime.now(UTC)))
            refused: Any = session.execute(
                select(*(func.coalesce(func.sum(c), 0) for c in _REFUSED.values()))
            ).one()
        yield GaugeMetricFamily(
            "umpass_sms_sent_today",
            "Text messages sent since midnight UTC (codes and replacement notices)",
            value=sent,
        )
        yield GaugeMetricFamily(
            "umpass_sms_daily_budget",
            "Text messages the service may send per UTC day (UMPASS_SMS_DAILY_BUDGET)",
            value=self.budget,
        )
        counter = CounterMetricFamily(
            "umpass_code_sends_refused",
            "Code sends refused by the per-student cap or the daily text budget",
            labels=["reason"],
        )
        for reason, total in zip(_REFUSED, refused, strict=True):
            counter.add_metric([reason], total)
        yield counter
