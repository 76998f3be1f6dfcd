"""Storing `umpass realm-check`'s results, on PostgreSQL (what a university deploys) and
SQLite: two runs at once mail once (the store-and-alert transaction is serialised, each
run reads the other's result), and the history stays bounded (the command prunes it).

The reports are made here (the realm is read elsewhere: test_realm_health.py); the
mail goes through the real SMTP server the tests read.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from devstack.postgres import RunningPostgres
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from provider.delivery import EmailMessage
from provider.delivery.smtp import SmtpMailer, SmtpSettings
from provider.realm_health import command, stored
from provider.realm_health.checks import CheckResult
from provider.realm_health.report import HealthReport
from provider.storage import migrate
from provider.storage.engine import make_engine
from provider.storage.models import RealmHealthCheck
from tests.integration.test_postgres_concurrency import race
from tests.support.inbox import Inbox

PARALLEL = 6


@pytest.fixture(params=["postgresql", "sqlite"])
def sessions(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[sessionmaker[Session]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('health') / 'h.db'}"
    else:
        postgres: RunningPostgres = request.getfixturevalue("postgres")
        url = postgres.create_database(f"health_{secrets.token_hex(4)}")
    engine: Engine = make_engine(url)
    migrate.upgrade(engine)
    held = [engine.connect() for _ in range(PARALLEL)]  # a warm pool: nobody connects late
    for conn in held:
        conn.close()
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


class SlowMailer(SmtpMailer):
    """The real SMTP delivery, a little slow (as a real relay is): a second run that did
    not wait its turn would read the store before the first one's result is in it."""

    def send(self, message: EmailMessage) -> None:
        time.sleep(0.3)
        super().send(message)


def _drifted(at: datetime) -> HealthReport:
    return HealthReport(
        "uni", at, [CheckResult("browser-flow", "Sign-in flow", "why", False, "browser")]
    )


def test_two_runs_at_once_mail_once(sessions: sessionmaker[Session], inbox: Inbox) -> None:
    to = f"it-{secrets.token_hex(3)}@example.edu"
    mailer = SlowMailer(SmtpSettings(port=inbox.port))
    now = datetime.now(UTC)

    results = race(lambda i: command.run(_drifted(now), sessions, mailer, to), PARALLEL)

    assert [r for r in results if isinstance(r, Exception)] == []
    notes = sorted(note for _, note in results)
    assert notes == ["alert emailed (1 new)"] + ["no new problem: no email"] * (PARALLEL - 1)
    assert len(inbox.mails_to(to)) == 1
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(RealmHealthCheck)) == PARALLEL


def test_the_history_is_bounded(sessions: sessionmaker[Session]) -> None:
    """At most the newest rows, none older than the days, the newest always kept."""
    now = datetime.now(UTC)

    class NoMail:
        def send(self, message: EmailMessage) -> None:
            raise AssertionError("nothing new to mail")

    healthy = HealthReport("uni", now, [CheckResult("brute-force", "t", "w", True, "")])
    with sessions.begin() as db:
        for minutes in range(40):  # 40 rows from the last 40 minutes
            row = _row(now - timedelta(minutes=minutes + 1))
            db.add(row)
        for days in (31, 45):  # and two older than 30 days
            db.add(_row(now - timedelta(days=days)))
    command.run(healthy, sessions, NoMail(), "", keep_rows=25, keep_days=30)
    with sessions() as db:
        kept = list(db.scalars(select(RealmHealthCheck.checked_at)))
        assert len(kept) == 25
        assert min(kept) > now - timedelta(days=30)
        assert stored.latest(db).checked_at == now

    # The defaults: 200 rows, 30 days.
    with sessions.begin() as db:
        for minutes in range(300):
            db.add(_row(now - timedelta(minutes=minutes + 1)))
    command.run(healthy, sessions, NoMail(), "")
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(RealmHealthCheck)) == stored.KEEP_ROWS

    # A last result older than the days is still kept (the page says "not checked since").
    with sessions.begin() as db:
        stored.prune(db, now + timedelta(days=90))
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(RealmHealthCheck)) == 1


def _row(at: datetime) -> RealmHealthCheck:
    return RealmHealthCheck(
        checked_at=at,
        realm="uni",
        readable=True,
        healthy=True,
        drift_items=0,
        failed_checks=0,
        problems=[],
        told=[],
        result={"realm": "uni"},
    )
