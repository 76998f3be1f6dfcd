"""Recoveries per week, counted against audit rows whose weeks are known."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session, sessionmaker

from provider.helpdesk.recoveries import WEEKS, weekly
from provider.storage.models import AuditEvent

NOW = datetime(2026, 9, 2, 12, 0, tzinfo=UTC)  # a Wednesday; its week starts 31 August
MONDAY = datetime(2026, 8, 31, tzinfo=UTC)


def _add(sessions: sessionmaker[Session], at: datetime, action: str) -> None:
    with sessions.begin() as session:
        session.add(AuditEvent(at=at, actor="student", action=action, subject="dc12345"))


def test_each_week_counts_its_unlocks_and_new_passwords(sessions: sessionmaker[Session]) -> None:
    _add(sessions, MONDAY, "recovery.unlocked")  # the first second of this week
    _add(sessions, NOW, "recovery.password_reset")
    _add(sessions, NOW, "recovery.password_reset")
    _add(sessions, MONDAY - timedelta(seconds=1), "recovery.unlocked")  # last week's Sunday
    _add(sessions, MONDAY - timedelta(weeks=WEEKS - 1), "recovery.password_reset")  # oldest
    _add(sessions, MONDAY - timedelta(weeks=WEEKS - 1, seconds=1), "recovery.unlocked")  # gone
    _add(sessions, NOW + timedelta(weeks=1), "recovery.unlocked")  # a clock ahead: left out
    for action in ("recovery.code_proven", "recovery.locked", "identify.ok"):
        _add(sessions, NOW, action)  # not a recovery that ended

    weeks = weekly(SimpleNamespace(reads=sessions), now=NOW)

    assert [w.starts for w in weeks] == [
        date(2026, 8, 31) - timedelta(weeks=n) for n in reversed(range(WEEKS))
    ]
    assert (weeks[-1].unlocked, weeks[-1].reset) == (1, 2)
    assert (weeks[-2].unlocked, weeks[-2].reset) == (1, 0)
    assert (weeks[0].unlocked, weeks[0].reset) == (0, 1)
    assert sum(w.total for w in weeks) == 5


def test_weeks_start_on_monday_in_the_help_desks_time_zone(
    sessions: sessionmaker[Session],
) -> None:
    macau = ZoneInfo("Asia/Macau")  # UTC+8: Monday 00:30 there is Sunday 16:30 in UTC
    _add(sessions, datetime(2026, 8, 31, 0, 30, tzinfo=macau), "recovery.unlocked")
    _add(sessions, datetime(2026, 8, 30, 23, 30, tzinfo=macau), "recovery.password_reset")

    weeks = weekly(SimpleNamespace(reads=sessions), now=NOW, zone=macau)

    assert weeks[-1].starts == date(2026, 8, 31)
    assert (weeks[-1].unlocked, weeks[-1].reset) == (1, 0)  # this week, there
    assert (weeks[-2].unlocked, weeks[-2].reset) == (0, 1)  # Sunday, last week
