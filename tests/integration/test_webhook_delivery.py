"""Events to downstream systems (provider/events), delivered by the real code to a real
HTTP receiver on loopback (tests/support/webhook_receiver.py), on SQLite and PostgreSQL:
once each, in order per student, signed; a receiver down for a while gets everything
later; one answering 500 gets the event N times, then it is a dead letter until sent
again; two `umpass deliver` processes (PostgreSQL) never send an event twice.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from devstack.postgres import RunningPostgres
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from provider import events
from provider.events import outbox, queue
from provider.events.deliver import REGISTRY, Deliverer
from provider.events.endpoints import DeliverySettings, Endpoint
from provider.events.metrics import OutboxCollector
from provider.storage import migrate
from provider.storage.engine import make_engine
from provider.storage.models import OutboxDelivery
from tests.support.webhook_receiver import Receiver, until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Engine]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('hooks') / 'hooks.db'}"
    else:
        postgres: RunningPostgres = request.getfixturevalue("postgres")
        url = postgres.create_database(f"hooks_{secrets.token_hex(4)}")
    engine = make_engine(url)
    migrate.upgrade(engine)
    yield url, engine
    engine.dispose()


@pytest.fixture
def sessions(database: tuple[str, Engine]) -> sessionmaker[Session]:
    return sessionmaker(database[1], expire_on_commit=False)


def settings_for(url: str, *receivers: tuple[str, Receiver, str], **kw: float) -> DeliverySettings:
    return DeliverySettings(
        database_url=url,
        endpoints=tuple(Endpoint(name, r.url, secret) for name, r, secret in receivers),
        max_attempts=int(kw.pop("max_attempts", 50)),
        timeout=kw.pop("timeout", 5.0),
        backoff=kw.pop("backoff", 0.0),  # retries at once: the tests wait on conditions
        backoff_max=kw.pop("backoff_max", 0.0),
    )


def write(sessions: sessionmaker[Session], *events_: tuple[str, str]) -> list[str]:
    """Each (type, user ID) in a transaction of its own, in this order; their ids."""
    ids = []
    for event_type, user_id in events_:
        with sessions.begin() as session:
            ids.append(outbox.record(session, event_type, user_id, changed=["x"]))
    return ids


def states(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as session:
        rows = session.execute(
            select(OutboxDelivery.state, func.count()).group_by(OutboxDelivery.state)
        )
        return {state: n for state, n in rows}


def interleaved(students: int, each: int) -> list[tuple[str, str]]:
    kinds = [events.ACTIVATED, events.CODE_REISSUED, events.PASSWORD_RESET, events.UNLOCKED]
    return [(kinds[i % len(kinds)], f"s{n:06d}") for i in range(each) for n in range(students)]


def in_student_order(written: list[str], wanted: list[tuple[str, str]], got: list[str]) -> bool:
    """`got` keeps, per student, the order the events were written in."""
    by_student: dict[str, list[str]] = {}
    for event_id, (_, user_id) in zip(written, wanted, strict=True):
        by_student.setdefault(user_id, []).append(event_id)
    position = {event_id: i for i, event_id in enumerate(got)}
    return all(
        [position[e] for e in ids] == sorted(position[e] for e in ids)
        for ids in by_student.values()
    )


def test_each_event_arrives_once_in_order_signed_at_every_endpoint(
    database: tuple[str, Engine], sessions: sessionmaker[Session]
) -> None:
    secrets_ = (new_secret(), new_secret())
    lms, mail = Receiver(secrets_[0]), Receiver(secrets_[1])
    try:
        lms.start()
        mail.start()
        wanted = interleaved(students=4, each=3)
        written = write(sessions, *wanted)
        deliverer = Deliverer(
            settings_for(database[0], ("lms", lms, secrets_[0]), ("mail", mail, secrets_[1])),
            sessions,
        )
        until(lambda: states(sessions) == {"delivered": 2 * len(wanted)}, also=deliverer.run_once)
        for box in (lms, mail):
            assert sorted(box.ids()) == sorted(written)  # each once
            assert all(r.signature_ok for r in box.received)
            assert in_student_order(written, wanted, box.ids())
            first = box.accepted[0]
            assert set(first.body) == {"type", "timestamp", "data"}
            assert set(first.body["data"]) == {"user_id", "at", "changed"}
        # Nothing is sent again once delivered.
        assert deliverer.run_once() == 0
        assert len(lms.received) == len(mail.received) == len(wanted)
    finally:
        lms.close()
        mail.close()


def test_a_receiver_down_for_a_while_gets_everything_later_in_order(
    database: tuple[str, Engine], sessions: sessionmaker[Session]
) -> None:
    secret = new_secret()
    receiver = Receiver(secret)
    wanted = interleaved(students=3, each=3)
    written = write(sessions, *wanted)
    deliverer = Deliverer(settings_for(database[0], ("lms", receiver, secret)), sessions)
    try:
        # Down (the port refuses): every student's first event is tried and kept, the
        # later ones held back behind it.
        for _ in range(3):
            deliverer.run_once()
        with sessions() as session:
            rows = session.scalars(select(OutboxDelivery).order_by(OutboxDelivery.event_id)).all()
        assert [r.state for r in rows] == ["pending"] * len(wanted)
        assert [r.attempts for r in rows] == [3] * 3 + [0] * (len(wanted) - 3)
        assert {r.last_error for r in rows[:3]} == {"ConnectionError"}
        # Up: all of it arrives, once, in order.
        receiver.start()
        until(lambda: states(sessions) == {"delivered": len(wanted)}, also=deliverer.run_once)
        assert sorted(receiver.ids()) == sorted(written)
        assert len(receiver.received) == len(wanted)
        assert in_student_order(written, wanted, receiver.ids())
    finally:
        receiver.close()


def counted(outcome: str) -> float:
    labels = {"endpoint": "lms", "outcome": outcome}
    return REGISTRY.get_sample_value("umpass_webhook_deliveries_total", labels) or 0.0


def test_an_endpoint_answering_500_gets_n_tries_then_a_dead_letter_until_sent_again(
    database: tuple[str, Engine], sessions: sessionmaker[Session]
) -> None:
    secret = new_secret()
    healthy = False
    receiver = Receiver(secret, answer=lambda _: 204 if healthy else 500)
    receiver.start()
    first, later = write(
        sessions, (events.ACTIVATED, "s000001"), (events.PASSWORD_RESET, "s000001")
    )
    (other,) = write(sessions, (events.ACTIVATED, "s000002"))
    deliverer = Deliverer(
        settings_for(database[0], ("lms", receiver, secret), max_attempts=3), sessions
    )
    try:
        before = {o: counted(o) for o in ("failed", "dead", "delivered")}
        until(lambda: states(sessions).get("dead") == 2, also=deliverer.run_once)
        # The deliver process's counters: two failed tries, then dead, for each.
        assert {o: counted(o) - n for o, n in before.items()} == {
            "failed": 4,
            "dead": 2,
            "delivered": 0,
        }
        gauges = CollectorRegistry()
        gauges.register(OutboxCollector(sessions))
        labels = {"endpoint": "lms", "state": "dead"}
        assert gauges.get_sample_value("umpass_webhook_deliveries_waiting", labels) == 2
        # Three tries each of the first events, none of the later one (held back).
        assert sorted(r.webhook_id for r in receiver.received) == sorted([first, other] * 3)
        assert deliverer.run_once() == 0  # dead stays dead
        with sessions() as session:
            dead = queue.dead_letters(session)
        assert [(d.event_uuid, d.attempts, d.last_error) for d in dead] == [
            (first, 3, "HTTP 500"),
            (other, 3, "HTTP 500"),
        ]
        # Sent again once the receiver is fixed: it arrives, then the later one.
        healthy = True
        with sessions.begin() as session:
            assert queue.send_again(session, dead[0].delivery_id, datetime.now(UTC))
            assert not queue.send_again(session, dead[0].delivery_id, datetime.now(UTC))
        until(lambda: states(sessions) == {"delivered": 2, "dead": 1}, also=deliverer.run_once)
        assert receiver.ids() == [first, later]
    finally:
        receiver.close()


def test_a_slow_endpoint_never_holds_up_another(
    database: tuple[str, Engine], sessions: sessionmaker[Session]
) -> None:
    """`run` works each endpoint on its own: while the LMS sits on its first request, the
    mail system gets every event. Worked in turn, mail would wait for the LMS's answer."""
    secret = new_secret()
    released = threading.Event()
    slow = Receiver(secret, answer=lambda _: 204 if released.wait(60) else 500)
    fast = Receiver(secret)
    written = write(sessions, *interleaved(students=3, each=2))
    deliverer = Deliverer(
        settings_for(database[0], ("lms", slow, secret), ("mail", fast, secret), timeout=60),
        sessions,
    )
    stop = threading.Event()
    running = threading.Thread(target=deliverer.run, args=(stop, 0.02))
    slow.start()
    fast.start()
    try:
        running.start()
        until(lambda: sorted(fast.ids()) == sorted(written))
        assert slow.accepted == []  # still answering its first request
        released.set()
        until(lambda: sorted(slow.ids()) == sorted(written))
    finally:
        released.set()
        stop.set()
        running.join(timeout=90)
        slow.close()
        fast.close()
    assert not running.is_alive()


def test_two_deliver_processes_never_send_an_event_twice(
    postgres: RunningPostgres, tmp_path_factory: pytest.TempPathFactory
) -> None:
    url = postgres.create_database(f"hooks_{secrets.token_hex(4)}")
    engine = make_engine(url)
    migrate.upgrade(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    secret = new_secret()
    receiver = Receiver(secret)
    receiver.delay = 0.005  # each request takes a little while: the processes overlap
    receiver.start()
    wanted = interleaved(students=40, each=5)
    written = write(sessions, *wanted)
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "UMPASS_TESTING": "1",
        "UMPASS_WEBHOOK_ENDPOINTS": json.dumps(
            [{"name": "lms", "url": receiver.url, "secret": secret}]
        ),
        "UMPASS_WEBHOOK_BACKOFF": "0",
    }
    command = [sys.executable, "-m", "provider.cli", "deliver", "--poll", "0.02"]
    procs = [subprocess.Popen(command, env=env, cwd=ROOT, stderr=subprocess.PIPE) for _ in range(2)]
    try:
        until(lambda: states(sessions) == {"delivered": len(wanted)}, timeout=90)
    finally:
        for proc in procs:
            proc.terminate()
        errors = [proc.communicate(timeout=30)[1].decode() for proc in procs]
        receiver.close()
        engine.dispose()
    assert [proc.returncode for proc in procs] == [0, 0], errors
    ids = receiver.ids()
    assert len(ids) == len(set(ids)) == len(wanted), "an event was delivered twice"
    assert len(receiver.received) == len(wanted)
    assert in_student_order(written, wanted, ids)
    # Both processes did part of the work (else this proved nothing about two at once).
    assert len({r.agent for r in receiver.accepted}) == 2
