"""`umpass purge` on PostgreSQL: the same rules, one replica at a time (advisory lock),
two purges started together, and live requests racing a purge with real connections."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from devstack.postgres import RunningPostgres
from sqlalchemy import Engine, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from provider import cli
from provider.guards import lockout
from provider.purge import ADVISORY_LOCK_KEY, KINDS, PurgeBusy, PurgeReport, Retention, purge
from provider.storage import migrate
from provider.storage.engine import make_engine
from provider.storage.models import Base, IdentifyLockout, OutboxDelivery, OutboxEvent
from tests.support import purge_rows as rows
from tests.support.purge_rows import NOW


@pytest.fixture(scope="module")
def url(postgres: RunningPostgres) -> Iterator[str]:
    url = postgres.create_database(f"purge_{secrets.token_hex(4)}")
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    yield url


@pytest.fixture
def db(url: str) -> Iterator[Engine]:
    engine = make_engine(url)
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(db: Engine) -> sessionmaker[Session]:
    return sessionmaker(db, expire_on_commit=False)


def test_every_kind_dry_then_real_then_nothing_left_to_do(db, sessions) -> None:
    rows.arrange_everything(sessions, n=5)
    before = rows.row_counts(sessions)
    dry = purge(db, Retention(), dry_run=True, now=NOW)
    assert dry.counts == {k.name: 5 for k in KINDS} and rows.row_counts(sessions) == before
    assert purge(db, Retention(batch_size=2), now=NOW).counts == dry.counts
    assert purge(db, Retention(), now=NOW).counts == {k.name: 0 for k in KINDS}
    assert rows.row_counts(sessions) == {k.name: 5 for k in KINDS}
    # `db` keeps its connection pooled: the purge gave its lock back, another replica may go.
    other = make_engine(url_of(db))
    assert purge(other, Retention(), now=NOW).counts == {k.name: 0 for k in KINDS}
    other.dispose()


def test_a_replica_finds_another_purging_and_leaves(db, sessions, url, monkeypatch, capsys):
    rows.arrange_everything(sessions, n=2)
    before = rows.row_counts(sessions)
    with db.connect() as other:  # another replica's purge, holding the lock
        other.execute(text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
        with pytest.raises(PurgeBusy):
            purge(db, Retention(), now=NOW)
        monkeypatch.setenv("DATABASE_URL", url)
        monkeypatch.setenv("UMPASS_KC_CLIENT_SECRET", "x")
        monkeypatch.setenv("UMPASS_TESTING", "1")
        assert cli.main(["purge"]) == 0
        assert "another purge is running" in capsys.readouterr().out
        assert rows.row_counts(sessions) == before
        other.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK_KEY})
    assert sum(purge(db, Retention(), now=NOW).counts.values()) == 2 * len(KINDS)


def test_two_purges_at_once_both_finish_with_the_right_end_state(db, sessions, url) -> None:
    rows.arrange_everything(sessions, n=200)
    barrier = threading.Barrier(2)
    outcomes: list[PurgeReport | BaseException] = []

    def replica() -> None:
        engine = make_engine(url)  # each its own pool, as two replicas have
        try:
            barrier.wait()
            outcomes.append(purge(engine, Retention(batch_size=25), now=NOW))
        except BaseException as exc:  # PurgeBusy expected for one; anything else fails below
            outcomes.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=replica) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    reports = [o for o in outcomes if isinstance(o, PurgeReport)]
    assert len(outcomes) == 2 and all(isinstance(o, PurgeReport | PurgeBusy) for o in outcomes), (
        outcomes
    )
    for kind in KINDS:
        assert sum(r.counts[kind.name] for r in reports) == 200
    assert rows.row_counts(sessions) == {k.name: 200 for k in KINDS}
    with db.connect() as conn:  # the lock was given back
        assert conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK_KEY})


def test_a_row_a_live_request_is_changing_is_not_deleted(db, sessions) -> None:
    # A blank lockout row is due; a student's attempt is counting on it right now (its
    # transaction holds the row). Whatever the purge read before, the count must stand.
    now = datetime.now(UTC)
    rows.add(sessions, rows.lockout("busy", updated=now), rows.lockout("idle", updated=now))
    outcome: list[PurgeReport | BaseException] = []
    with db.connect() as request:
        request.execute(
            text("UPDATE identify_lockouts SET failures = failures + 1 WHERE user_id = 'busy'")
        )
        purger = threading.Thread(
            target=lambda: outcome.append(purge(make_engine(url_of(db)), Retention(), now=now))
        )
        purger.start()
        purger.join(timeout=1)  # it may wait on the row, or skip it
        request.commit()
    purger.join(timeout=30)
    assert isinstance(outcome[0], PurgeReport) and outcome[0].counts["identify lockouts"] == 1
    with sessions() as session:
        assert {r.user_id: r.failures for r in session.query(IdentifyLockout)} == {"busy": 1}
    assert lockout.begin_attempt(sessions, "busy", now) is None


def test_an_event_a_deliver_process_is_giving_a_row_right_now_is_not_deleted(db, sessions):
    """Both events are delivered everywhere and old enough to go. A `umpass deliver` round
    for a new endpoint is giving one of them its row right now (uncommitted): the purge
    must not delete it from under that row, and its new endpoint must still get it."""
    old = NOW - timedelta(days=Retention().event_days + 1)
    taken = rows.event(sessions, "taken", created=old, states=("delivered",))
    rows.event(sessions, "free", created=old, states=("delivered",))
    outcome: list[PurgeReport | BaseException] = []
    with db.connect() as deliver:
        deliver.execute(
            insert(OutboxDelivery).values(
                event_id=taken,
                endpoint="new-endpoint",
                user_id="dc12345",
                state="pending",
                attempts=0,
                next_attempt_at=NOW,
            )
        )
        purger = threading.Thread(
            target=lambda: outcome.append(purge(make_engine(url_of(db)), Retention(), now=NOW))
        )
        purger.start()
        purger.join(timeout=10)  # it skips the row the insert holds: no waiting
        assert not purger.is_alive()
        deliver.commit()
    assert isinstance(outcome[0], PurgeReport) and outcome[0].counts["outbox events"] == 1
    assert rows.ids(sessions, OutboxEvent.uuid) == {rows.event_uuid("taken")}
    with sessions() as session:
        states = session.scalars(
            select(OutboxDelivery.state).where(OutboxDelivery.event_id == taken)
        )
        assert sorted(states) == ["delivered", "pending"]


def url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)
