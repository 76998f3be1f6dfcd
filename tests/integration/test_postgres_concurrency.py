"""Every concurrency guarantee, proven on PostgreSQL with real parallel connections
(and, as the embedded default, on SQLite).

SQLite (the embedded default) runs one writer at a time (BEGIN IMMEDIATE); PostgreSQL runs
writers side by side under READ COMMITTED, where a select-then-insert or a
read-modify-write can let two transactions act on the same stale read. Each test
releases its threads together at a barrier, each thread on its own pooled connection,
and counts what got through.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from devstack.postgres import RunningPostgres
from sqlalchemy import Engine, event, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from provider.activation_codes import consume_code, enrol, issue_code
from provider.flows.engine import FlowConflict, FlowEngine
from provider.flows.state import ActivationData
from provider.flows.steps.activate import ActivationInProgress, _claim_code, activate
from provider.guards import lockout, send_budget, verification
from provider.intake.provision import issue_intake_codes
from provider.keyed_hash import KeyedHasher, Purpose
from provider.oidc.server import ActivationCodeGrant
from provider.storage import migrate
from provider.storage.engine import bind_of, make_engine
from provider.storage.models import (
    ActivationCode,
    ContactSend,
    ContactVerification,
    IdentifyLockout,
    OidcAuthorizationCode,
    SendDay,
)
from tests.support.flow_data import Notes

PARALLEL = 12


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """A database of its own, with the service's own engine settings; the same races on
    SQLite show the fixes keep the embedded default right."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('race') / 'race.db'}"
    else:
        postgres: RunningPostgres = request.getfixturevalue("postgres")
        url = postgres.create_database(f"race_{secrets.token_hex(4)}")
    engine = make_engine(url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    # Open PARALLEL connections at once so the race starts from a warm pool: no thread
    # spends its head start connecting.
    held = [engine.connect() for _ in range(PARALLEL)]
    for conn in held:
        conn.close()
    return sessionmaker(engine, expire_on_commit=False)


@pytest.fixture(scope="module")
def hasher() -> KeyedHasher:
    return KeyedHasher(b"race-test-key-" + b"r" * 32)


def race(task: Callable[[int], Any], parties: int = PARALLEL) -> list[Any]:
    """Run task(0..parties-1) in threads released together; each result or exception."""
    barrier = threading.Barrier(parties)
    results: list[Any] = [None] * parties

    def run(i: int) -> None:
        barrier.wait(timeout=30)
        try:
            results[i] = task(i)
        except Exception as exc:  # collected: the test counts outcomes by kind
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(parties)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a racing thread hung"
    return results


def _student(sessions: sessionmaker[Session], hasher: KeyedHasher) -> str:
    user_id = f"r{secrets.token_hex(4)}"
    with sessions.begin() as session:
        enrol(session, hasher, user_id=user_id, date_of_birth=date(2007, 1, 2), id_number="A1234")
    return user_id


def _code(sessions: sessionmaker[Session], hasher: KeyedHasher) -> tuple[str, int]:
    user_id = _student(sessions, hasher)
    with sessions.begin() as session:
        issue_code(session, hasher, user_id)
    with sessions() as session:
        code_id = session.scalar(select(ActivationCode.id).where(ActivationCode.user_id == user_id))
    assert code_id is not None
    return user_id, code_id


# -- activation codes ---------------------------------------------------------------------


def _claim(sessions: sessionmaker[Session], code_id: int, flow_key: str, now: datetime) -> object:
    """The code's claim in a transaction of its own (activate makes it the flow's)."""
    with bind_of(sessions).begin() as conn:
        return _claim_code(conn, code_id, flow_key, now)


def test_activation_code_is_claimed_by_one_flow(
    sessions: sessionmaker[Session], hasher: KeyedHasher
) -> None:
    _, code_id = _code(sessions, hasher)
    now = datetime.now(UTC)
    claims = race(lambda i: _claim(sessions, code_id, f"flow-{i}", now))
    assert not [c for c in claims if isinstance(c, Exception)]
    assert sum(c is not None for c in claims) == 1
    winner = next(i for i, c in enumerate(claims) if c is not None)
    with sessions() as session:
        assert session.get(ActivationCode, code_id).claimed_by == f"flow-{winner}"


def test_activation_code_is_consumed_once(
    sessions: sessionmaker[Session], hasher: KeyedHasher
) -> None:
    _, code_id = _code(sessions, hasher)
    now = datetime.now(UTC)

    def consume(_: int) -> bool:
        with sessions.begin() as session:
            return consume_code(session, code_id, now)

    assert race(consume).count(True) == 1


def test_at_most_one_open_code_per_student(
    sessions: sessionmaker[Session], hasher: KeyedHasher
) -> None:
    """Parallel re-issues (help desk, a batch) queue on the student: each one succeeds and
    revokes the one before, as on SQLite; none fails on the one-open-code index."""
    user_id = _student(sessions, hasher)

    def reissue(_: int) -> str:
        with sessions.begin() as session:
            return issue_code(session, hasher, user_id).code

    issued = race(reissue)
    assert not [r for r in issued if isinstance(r, Exception)], issued
    with sessions() as session:
        rows = session.scalars(select(ActivationCode).where(ActivationCode.user_id == user_id))
        codes = list(rows)
    assert len(codes) == PARALLEL
    open_codes = [c for c in codes if c.used_at is None and c.revoked_at is None]
    assert len(open_codes) == 1
    # The open one is the last issued: it matches one of the codes handed out.
    digests = {hasher.digest(Purpose.ACTIVATION_CODE, c.replace("-", "")) for c in issued}
    assert open_codes[0].code_hash in digests


def test_batch_and_single_issuers_leave_one_open_code(
    sessions: sessionmaker[Session], hasher: KeyedHasher
) -> None:
    """An intake batch re-issuing while the help desk re-issues the same students."""
    students = [_student(sessions, hasher) for _ in range(3)]
    svc = _svc(sessions, hasher)

    def reissue(i: int) -> int:
        if i % 2:
            with sessions.begin() as session:
                issue_code(session, hasher, students[i % len(students)])
            return 1
        return len(issue_intake_codes(svc, students, reissue=True))

    outcomes = race(reissue)
    assert not [r for r in outcomes if isinstance(r, Exception)], outcomes
    with sessions() as session:
        open_per_student = session.execute(
            select(ActivationCode.user_id, func.count())
            .where(
                ActivationCode.user_id.in_(students),
                ActivationCode.used_at.is_(None),
                ActivationCode.revoked_at.is_(None),
            )
            .group_by(ActivationCode.user_id)
        ).all()
    assert sorted(open_per_student) == sorted((s, 1) for s in students)


# -- identify lockout ---------------------------------------------------------------------


def _wrong_attempt(sessions: sessionmaker[Session], key: str, now: datetime) -> bool:
    """One identify attempt whose details are wrong; True when it was let through."""
    if lockout.begin_attempt(sessions, key, now) is not None:
        return False
    lockout.record_failure(sessions, key, now)
    return True


def test_parallel_wrong_attempts_below_the_limit_are_each_counted(
    sessions: sessionmaker[Session],
) -> None:
    now = datetime.now(UTC)
    below = lockout.MAX_FAILURES - 1
    # Several rounds on fresh IDs: the first attempts also race to create the counter.
    for _ in range(6):
        key = f"r{secrets.token_hex(4)}"
        through = race(lambda _, k=key: _wrong_attempt(sessions, k, now), parties=below)
        assert through == [True] * below
        with sessions() as session:
            row = session.get(IdentifyLockout, key)
            assert (row.failures, row.locked_until) == (below, None)
    # The next one reaches the threshold exactly and locks.
    assert _wrong_attempt(sessions, key, now)
    assert lockout.begin_attempt(sessions, key, now) is not None
    with sessions() as session:
        assert session.get(IdentifyLockout, key).lock_count == 1


def test_parallel_wrong_attempts_lock_at_exactly_the_limit(
    sessions: sessionmaker[Session],
) -> None:
    key = f"r{secrets.token_hex(4)}"
    now = datetime.now(UTC)
    through = race(lambda _: _wrong_attempt(sessions, key, now))
    assert through.count(True) == lockout.MAX_FAILURES
    with sessions() as session:
        row = session.get(IdentifyLockout, key)
        assert row.locked_until == now + lockout.BASE_LOCK
        assert (row.lock_count, row.failures) == (1, 0)  # one lock, not one per thread
    assert lockout.begin_attempt(sessions, key, now) == now + lockout.BASE_LOCK


def test_parallel_attempts_after_a_full_count_ends_stop_at_the_limit(
    sessions: sessionmaker[Session],
) -> None:
    """Five attempts never came back and their lock's length has passed: parallel new
    attempts each reset the count and count on it; a reset must not erase another's
    count (the reset only applies to the row as that attempt saw it), so exactly
    MAX_FAILURES go on."""
    now = datetime.now(UTC)
    for _ in range(3):
        key = f"r{secrets.token_hex(4)}"
        with sessions.begin() as session:
            session.add(
                IdentifyLockout(
                    user_id=key,
                    failures=lockout.MAX_FAILURES,
                    lock_count=0,
                    updated_at=now - lockout.BASE_LOCK - timedelta(seconds=1),
                )
            )
        through = race(lambda _, k=key: lockout.begin_attempt(sessions, k, now) is None)
        assert through.count(True) == lockout.MAX_FAILURES, through
        with sessions() as session:
            assert session.get(IdentifyLockout, key).failures == lockout.MAX_FAILURES


# -- contact codes ------------------------------------------------------------------------


# The throttles per contact and per flow, with no per-student cap in the way.
UNCAPPED = verification.SendCaps(student=())


def _send(sessions: sessionmaker[Session], hasher: KeyedHasher, **kw: Any) -> str:
    kw = {"channel": "email", "now": datetime.now(UTC), "student": "s-race", "caps": UNCAPPED, **kw}
    try:
        verification.issue(sessions, hasher, **kw)
    except verification.StudentCapped:
        return "capped"
    except verification.Throttled:
        return "throttled"
    except verification.SmsBudgetSpent:
        return "budget"
    return "sent"


@pytest.mark.parametrize("students", ["one", "many"])
def test_parallel_sends_to_one_contact_from_many_flows_pass_once(
    sessions: sessionmaker[Session], hasher: KeyedHasher, students: str
) -> None:
    """Many flows of one student, or of many (one phone a family shares): the contact's
    own throttle holds, not only the student's."""
    address = f"{secrets.token_hex(4)}@example.edu"

    def send(i: int) -> str:
        student = f"s-race-{i}" if students == "many" else "s-race"
        return _send(sessions, hasher, flow_key=f"f{i}-{address}", value=address, student=student)

    outcomes = race(send)
    assert outcomes.count("sent") == 1, outcomes
    contact = verification.contact_hash(hasher, "email", address)
    with sessions() as session:
        sends = session.scalar(
            select(func.count()).select_from(ContactSend).where(ContactSend.contact_hash == contact)
        )
    assert sends == 1


def test_parallel_sends_in_one_flow_to_one_contact_pass_once(
    sessions: sessionmaker[Session], hasher: KeyedHasher
) -> None:
    # Here the contact's verification row is locked too, but only after the throttle
    # counted: a narrower window, so three rounds.
    for _ in range(3):
        address = f"{secrets.token_hex(4)}@example.edu"
        flow_key = f"flow-{address}"
        outcomes = race(
            lambda _, f=flow_key, a=address: _send(sessions, hasher, flow_key=f, value=a)
        )
        assert outcomes.count("sent") == 1, outcomes


def test_parallel_sends_in_one_flow_stop_at_the_flow_limit(
    sessions: sessionmaker[Session], hasher: KeyedHasher
) -> None:
    flow_key = f"flow-{secrets.token_hex(4)}"
    parties = verification.FLOW_PER_HOUR + 6
    outcomes = race(
        lambda i: _send(sessions, hasher, flow_key=flow_key, value=f"{i}.{flow_key}@example.edu"),
        parties=parties,
    )
    assert outcomes.count("sent") == verification.FLOW_PER_HOUR, outcomes


def test_parallel_sends_of_one_student_from_many_flows_stop_at_the_cap(
    sessions: sessionmaker[Session], hasher: KeyedHasher
) -> None:
    """One student identified in many browsers at once (every flow and contact its own):
    the student's cap is one count across them all."""
    cap = 3
    caps = verification.SendCaps(student=((cap, verification.DAY),))
    for _ in range(3):
        student = f"s{secrets.token_hex(4)}"
        outcomes = race(
            lambda i, s=student: _send(
                sessions,
                hasher,
                flow_key=f"flow-{i}-{s}",
                value=f"{i}.{s}@example.edu",
                student=s,
                caps=caps,
            )
        )
        assert outcomes.count("sent") == cap, outcomes
        assert outcomes.count("capped") == PARALLEL - cap, outcomes
        with sessions() as session:
            counted = session.scalar(
                select(func.count()).select_from(ContactSend).where(ContactSend.user_id == student)
            )
        assert counted == cap


def test_parallel_texts_never_pass_the_daily_budget(
    sessions: sessionmaker[Session], hasher: KeyedHasher
) -> None:
    """Texts from many students at once (as from many replicas: each thread its own
    connection) take exactly the budget; the others are refused and counted."""
    budget = 5
    caps = verification.SendCaps(student=(), sms_budget=budget)
    for _ in range(3):
        # A day of its own in the shared database, so earlier rounds and tests count nothing.
        now = datetime(2031, 1, 1, 12, tzinfo=UTC) + timedelta(days=secrets.randbelow(10**4))
        tag = secrets.token_hex(3)
        outcomes = race(
            lambda i, t=tag, at=now: _send(
                sessions,
                hasher,
                flow_key=f"flow-{i}-{t}",
                value=f"+8536{secrets.randbelow(10**7):07d}",
                student=f"s{i}-{t}",
                channel="phone",
                now=at,
                caps=caps,
            )
        )
        assert outcomes.count("sent") == budget, outcomes
        assert outcomes.count("budget") == PARALLEL - budget, outcomes
        with sessions() as session:
            day = session.get(SendDay, send_budget.day_of(now))
            assert (day.sms_sent, day.refused_sms_budget) == (budget, PARALLEL - budget)


def test_parallel_refunds_and_reservations_keep_the_count_exact(
    sessions: sessionmaker[Session],
) -> None:
    """Failed deliveries giving units back while others take them: the count ends exactly
    at what was taken minus what was given back, never past the budget."""
    budget = PARALLEL
    now = datetime(2031, 1, 1, 12, tzinfo=UTC) + timedelta(days=secrets.randbelow(10**4))
    day = send_budget.day_of(now)
    with sessions.begin() as session:
        for _ in range(PARALLEL // 2):
            assert send_budget.reserve(session, now, budget) == day

    def act(i: int) -> bool:
        with sessions.begin() as session:
            if i % 2:
                send_budget.give_back(session, day)
                return False
            return send_budget.reserve(session, now, budget) is not None

    # Half give a unit back, half take one, in any order: room for all, none lost.
    assert race(act).count(True) == PARALLEL // 2
    with sessions() as session:
        assert send_budget.sent_on(session, day) == PARALLEL // 2


def test_parallel_wrong_contact_codes_are_each_counted(
    sessions: sessionmaker[Session], hasher: KeyedHasher
) -> None:
    address = f"{secrets.token_hex(4)}@example.edu"
    flow_key = f"flow-{address}"
    now = datetime.now(UTC)
    sent, _ = verification.issue(
        sessions,
        hasher,
        flow_key=flow_key,
        student=f"s-{address}",
        channel="email",
        value=address,
        now=now,
    )
    wrong = f"{(int(sent.code) + 1) % 10**6:06d}"

    def guess(_: int) -> str:
        try:
            verification.check(
                sessions,
                hasher,
                flow_key=flow_key,
                channel="email",
                value=address,
                code=wrong,
                now=now,
            )
        except verification.CodeWrong as exc:
            return f"wrong:{exc.remaining}"
        except verification.TooManyWrong:
            return "too-many"
        return "accepted"

    outcomes = race(guess)
    # Each of the first MAX_WRONG guesses was counted on its own: the remaining tries
    # went down one by one, and the last of them used up the contact.
    assert sorted(o for o in outcomes if o.startswith("wrong:")) == [
        f"wrong:{n}" for n in range(1, verification.MAX_WRONG)
    ]
    assert outcomes.count("too-many") == PARALLEL - (verification.MAX_WRONG - 1)
    contact = verification.contact_hash(hasher, "email", address)
    with sessions() as session:
        row = session.scalars(
            select(ContactVerification).where(
                ContactVerification.flow_key == flow_key,
                ContactVerification.contact_hash == contact,
            )
        ).one()
    assert row.failures == verification.MAX_WRONG
    # The right code no longer helps.
    with pytest.raises(verification.TooManyWrong):
        verification.check(
            sessions,
            hasher,
            flow_key=flow_key,
            channel="email",
            value=address,
            code=sent.code,
            now=now,
        )


# -- OIDC authorization codes ---------------------------------------------------------------


def test_oidc_authorization_code_is_spent_once(
    sessions: sessionmaker[Session], hasher: KeyedHasher
) -> None:
    code = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    with sessions.begin() as session:
        session.add(
            OidcAuthorizationCode(
                code_hash=hasher.digest(Purpose.OIDC_CODE, code),
                client_id="broker",
                keycloak_id="kc-1",
                username="student",
                redirect_uri="https://kc.example/broker/endpoint",
                scope="openid",
                nonce="n",
                auth_time=int(now.timestamp()),
                expires_at=now + timedelta(seconds=60),
            )
        )
    grant_class = type("RaceGrant", (ActivationCodeGrant,), {"svc": _svc(sessions, hasher)})
    grant = grant_class.__new__(grant_class)  # only the storage half is exercised
    client = SimpleNamespace(get_client_id=lambda: "broker")
    spent = race(lambda _: grant.query_authorization_code(code, client))
    assert not [s for s in spent if isinstance(s, Exception)]
    assert sum(s is not None for s in spent) == 1


# -- flows --------------------------------------------------------------------------------

STEPS = ("identify", "password", "done")  # identified: at the password step


def test_flow_compare_and_set_lets_one_writer_through(
    sessions: sessionmaker[Session], hasher: KeyedHasher
) -> None:
    engine = FlowEngine(sessions, hasher, STEPS, Notes)
    started = engine.start_identified(engine.load_or_start(None), user_id="r-flow", data=Notes({}))

    # Every writer read version 0 before any of them writes.
    states = [engine.load_or_start(started.flow_id) for _ in range(PARALLEL)]

    def save(i: int) -> str:
        state = states[i]
        state.data = Notes({"writer": i})
        try:
            engine.complete(state)
        except FlowConflict:
            return "conflict"
        return "saved"

    assert race(save).count("saved") == 1
    final = engine.load_or_start(started.flow_id)
    assert (final.version, final.step) == (1, "done")


class _CountingKeycloak:
    """Stands in for the realm (the race is in the database): counts account writes."""

    def __init__(self) -> None:
        self.writes = 0
        self._lock = threading.Lock()

    def activate(self, *_: Any, **__: Any) -> bool:
        with self._lock:
            self.writes += 1
        return True


def _svc(sessions: sessionmaker[Session], hasher: KeyedHasher, keycloak: Any = None) -> Any:
    return SimpleNamespace(sessions=sessions, hasher=hasher, keycloak=keycloak)


def test_parallel_submits_activate_once(
    sessions: sessionmaker[Session], hasher: KeyedHasher
) -> None:
    """Twelve submits: six tabs of one flow and six other flows of the same student (other
    devices). One activates; the code is consumed once."""
    user_id, code_id = _code(sessions, hasher)
    engine = FlowEngine(sessions, hasher, STEPS, ActivationData)
    flows = [
        engine.start_identified(
            engine.load_or_start(None),
            user_id=user_id,
            data=ActivationData(code_id=code_id, keycloak_id="kc-race"),
        )
        for _ in range(PARALLEL // 2)
    ]
    keycloak = _CountingKeycloak()
    svc = _svc(sessions, hasher, keycloak)

    # Each submit has read its flow (at the password step) before any of them writes.
    states = [
        engine.load_or_start(flows[0].flow_id if i % 2 else flows[i // 2].flow_id)
        for i in range(PARALLEL)
    ]

    def submit(i: int) -> str:
        state = states[i]
        try:
            activate(svc, engine, state, "a long passphrase")
        except ActivationInProgress:
            return "in-progress"
        except Exception as exc:
            return type(exc).__name__
        return "activated"

    outcomes = race(submit)
    assert keycloak.writes == 1, outcomes
    assert outcomes.count("activated") == 1, outcomes
    with sessions() as session:
        code = session.get(ActivationCode, code_id)
    assert code.used_at is not None


# -- one interleaving, forced -------------------------------------------------------------
# PostgreSQL only: another connection commits a change between a transaction's read and
# its write (a statement hook runs it just before the write). On SQLite the transaction
# holds the one write lock from its first statement, so this interleaving cannot happen
# there (the other connection would wait for it).


@pytest.fixture
def pg_sessions(postgres: RunningPostgres) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(postgres.create_database(f"between_{secrets.token_hex(4)}"))
    migrate.upgrade(engine)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


def _meanwhile(
    sessions: sessionmaker[Session], before: str, change: Callable[[], None]
) -> list[bool]:
    """Run `change` once, on another connection, just before the next statement that
    starts with `before`; returns a list that holds True once it ran."""
    engine = sessions.kw["bind"]
    ran: list[bool] = []

    def hook(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not ran and statement.startswith(before):
            ran.append(True)
            change()

    event.listen(engine, "before_cursor_execute", hook)
    return ran


@pytest.mark.parametrize("how", ["revoked", "used", "expired"])
def test_a_code_withdrawn_between_the_claims_read_and_write_is_not_claimed(
    pg_sessions: sessionmaker[Session], hasher: KeyedHasher, how: str
) -> None:
    """The help desk revokes the code (or another flow consumes it, or it runs out) after
    this flow read it as usable and before its claim is written: the claim's own WHERE
    sees the committed change, and nothing is claimed."""
    _, code_id = _code(pg_sessions, hasher)
    now = datetime.now(UTC)
    values = {
        "revoked": {"revoked_at": now},
        "used": {"used_at": now},
        "expired": {"expires_at": now},
    }

    def withdraw() -> None:
        with pg_sessions.begin() as other:
            other.execute(
                update(ActivationCode).where(ActivationCode.id == code_id).values(**values[how])
            )

    ran = _meanwhile(pg_sessions, "UPDATE activation_codes SET claimed_by", withdraw)
    assert _claim(pg_sessions, code_id, "flow-key", now) is None
    assert ran
    with pg_sessions() as session:
        assert session.get(ActivationCode, code_id).claimed_by is None


def test_a_counter_created_between_the_count_and_the_look_is_counted_on(
    pg_sessions: sessionmaker[Session],
) -> None:
    """This first attempt's count found no row; a parallel first attempt creates it before
    this one looks: this one counts on that row (it is neither locked nor full)."""
    key = f"r{secrets.token_hex(4)}"
    now = datetime.now(UTC)

    def parallel_first_attempt() -> None:
        assert lockout.begin_attempt(pg_sessions, key, now) is None

    ran = _meanwhile(pg_sessions, "SELECT identify_lockouts", parallel_first_attempt)
    assert lockout.begin_attempt(pg_sessions, key, now) is None
    assert ran
    with pg_sessions() as session:
        assert session.get(IdentifyLockout, key).failures == 2
