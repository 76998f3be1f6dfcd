"""The activation's ordering (provider/flows/steps/activate.py) at unit level: the real flow
engine and activation codes on a real SQLite database, and a Keycloak side that records
each call and keeps the one rule the ordering leans on (an active account is not written
again). Crashes, refusals and lost answers are the recorder's; the claims, the lease and
the recovery are the code under test. The same faults against the real Keycloak:
tests/integration/test_activation_faults.py; the races: test_postgres_concurrency.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError

from provider.activation_codes import enrol, issue_code
from provider.flows.engine import FlowEngine, FlowState
from provider.flows.state import ActivationData, OnRecord, PendingContact
from provider.flows.steps import activate as activation
from provider.flows.steps.activate import (
    CLAIM_LEASE,
    ActivationImpossible,
    ActivationInProgress,
    activate,
)
from provider.keycloak import (
    ACCEPTED_POLICIES,
    STATE_ACTIVE,
    STATE_PENDING,
    IdentityServiceUnavailable,
    PasswordRejected,
    UserNotFound,
)
from provider.storage.models import (
    ActivationCode,
    AuditEvent,
    Flow,
    OutboxEvent,
    PolicyAcceptance,
)

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
STEPS = ("identify", "password", "done")  # identified: at the password step
USER = "dc12345"
KC_ID = "kc-dc12345"
FIRST = "orbit lantern velvet 1987"
SECOND = "copper meadow whistle 2031"
POLICIES = ["terms@2026-11:2026-11-26T11:55:00Z"]


class Died(Exception):
    """The request's process died (here: while it waited on Keycloak)."""


@dataclass
class RecordingKeycloak:
    """The gateway's two calls the activation makes, recorded. `faults[name]` is raised by
    the next call of that name before it writes; `lose_answer` lets the next activation
    write land and then raises IdentityServiceUnavailable, as when the answer is lost on
    the way back."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)
    active: set[str] = field(default_factory=set)
    passwords: dict[str, str] = field(default_factory=dict)
    faults: dict[str, Exception] = field(default_factory=dict)
    lose_answer: bool = False
    during: Callable[[], None] | None = None  # what another request does meanwhile

    def _call(self, name: str, *args: Any) -> None:
        self.calls.append((name, *args))
        if self.during is not None:
            self.during()
        fault = self.faults.pop(name, None)
        if fault is not None:
            raise fault

    def activate(
        self,
        user_id: str,
        password: str,
        *,
        attributes: dict[str, list[Any]],
        activated_at: datetime | None = None,
        for_sign_in: bool = False,
    ) -> bool:
        self._call("activate", user_id, password, attributes, activated_at, for_sign_in)
        if user_id in self.active:
            return False
        self.active.add(user_id)
        self.passwords[user_id] = password
        if self.lose_answer:
            self.lose_answer = False
            raise IdentityServiceUnavailable("answer lost")
        return True

    def set_password(self, user_id: str, password: str) -> None:
        self._call("set_password", user_id, password)
        self.passwords[user_id] = password

    def get_user(self, user_id: str) -> Any:
        self._call("get_user", user_id)
        state = STATE_ACTIVE if user_id in self.active else STATE_PENDING
        return SimpleNamespace(activation_state=state)


@dataclass
class World:
    sessions: Any
    hasher: Any
    engine: FlowEngine
    keycloak: RecordingKeycloak
    code_id: int

    @property
    def svc(self) -> Any:
        return SimpleNamespace(sessions=self.sessions, hasher=self.hasher, keycloak=self.keycloak)

    def flow(self, now: datetime = T0) -> FlowState:
        """A new flow of the student at the password step (a tab, a device)."""
        anonymous = self.engine.load_or_start(None, now)
        data = ActivationData(
            code_id=self.code_id,
            keycloak_id=KC_ID,
            accepted_policies=POLICIES,
            hints=["Mei"],
            on_record={"email": OnRecord("m•••@example.edu", verified=True)},
            pending={"phone": PendingContact("+85362001122", "+85362001122", False)},
        )
        return self.engine.start_identified(anonymous, user_id=USER, data=data, now=now)

    def load(self, state: FlowState, now: datetime = T0) -> FlowState:
        return self.engine.load_or_start(state.flow_id, now)

    def submit(self, state: FlowState, password: str = FIRST, now: datetime = T0, **kw) -> None:
        activate(self.svc, self.engine, self.load(state, now), password, now, **kw)

    def code(self) -> ActivationCode:
        with self.sessions() as session:
            return session.get(ActivationCode, self.code_id)

    def set_code(self, **values: Any) -> None:
        with self.sessions.begin() as session:
            session.execute(
                update(ActivationCode).where(ActivationCode.id == self.code_id).values(**values)
            )

    def row(self, state: FlowState) -> Flow:
        with self.sessions() as session:
            return session.get(Flow, self.engine.key(state))

    def released(self, state: FlowState, now: datetime = T0) -> bool:
        """The flow's claim was given back, written at the request's time."""
        row = self.row(state)
        return "claim" not in row.state and row.updated_at == now

    def audit(self) -> list[tuple[str, str, str | None, dict]]:
        with self.sessions() as session:
            rows = session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == "account.activated")
                .order_by(AuditEvent.id)
            )
            return [(e.actor, e.action, e.subject, e.detail) for e in rows]


@pytest.fixture
def world(sessions, hasher) -> World:
    with sessions.begin() as session:
        enrol(session, hasher, user_id=USER, date_of_birth=date(2007, 5, 9), id_number="A1234")
        issue_code(session, hasher, USER, now=T0 - timedelta(days=1))
    with sessions() as session:
        code_id = session.scalar(select(ActivationCode.id).where(ActivationCode.user_id == USER))
    return World(
        sessions,
        hasher,
        FlowEngine(sessions, hasher, STEPS, ActivationData),
        RecordingKeycloak(),
        code_id,
    )


def _write(password: str = FIRST, now: datetime = T0, for_sign_in: bool = False) -> tuple:
    return ("activate", KC_ID, password, {ACCEPTED_POLICIES: POLICIES}, now, for_sign_in)


@pytest.mark.parametrize("for_sign_in", [False, True])
def test_one_submit_writes_once_consumes_the_code_and_finishes(
    world: World, for_sign_in: bool
) -> None:
    state = world.flow()
    world.submit(state, for_sign_in=for_sign_in)
    assert world.keycloak.calls == [_write(for_sign_in=for_sign_in)]
    code = world.code()
    key = world.engine.key(state)
    assert (code.used_at, code.claimed_by, code.claimed_at) == (T0, key, T0)
    done = world.load(state)
    assert (done.step, done.version) == ("done", 2)  # the claim, then "done"
    row = world.row(state)
    assert (row.updated_at, row.expires_at) == (T0, T0 + world.engine.idle)
    # What only the activation needed is gone; the flow remembers it activated.
    assert done.data == ActivationData(
        code_id=world.code_id, keycloak_id=KC_ID, accepted_policies=POLICIES, activated=True
    )
    assert world.audit() == [("student", "account.activated", USER, {"recovered": False})]
    # The evidence the account now holds, kept by the service too, in the same transaction.
    with world.sessions() as session:
        kept = session.execute(
            select(PolicyAcceptance.user_id, PolicyAcceptance.policy_id, PolicyAcceptance.version)
        ).all()
    assert [tuple(row) for row in kept] == [(USER, "terms", "2026-11")]


def test_without_a_time_the_activation_happens_now(world: World) -> None:
    world.set_code(expires_at=datetime.now(UTC) + timedelta(days=1))
    state = world.flow(datetime.now(UTC))
    before = datetime.now(UTC)
    activate(world.svc, world.engine, world.engine.load_or_start(state.flow_id), FIRST)
    after = datetime.now(UTC)
    activated_at = world.keycloak.calls[0][4]
    assert before <= activated_at <= after
    assert before <= world.code().used_at <= after


def test_a_submit_of_a_flow_another_submit_is_activating_waits_for_the_lease(
    world: World,
) -> None:
    """The first submit died waiting on Keycloak: its flow and code claims stay. Another
    submit of the flow is told to wait until the lease runs out, then finishes the job."""
    state = world.flow()
    world.keycloak.faults["activate"] = Died()
    with pytest.raises(Died):
        world.submit(state)
    assert world.load(state).data.claim == T0.isoformat()
    assert world.row(state).updated_at == T0  # the claim was written at the request's time
    assert world.code().claimed_by == world.engine.key(state)
    almost = T0 + CLAIM_LEASE - timedelta(seconds=1)
    with pytest.raises(ActivationInProgress):
        world.submit(state, SECOND, now=almost)
    assert len(world.keycloak.calls) == 1  # the waiting submit called nothing
    assert world.load(state, almost).version == 1  # nor changed the flow
    world.submit(state, SECOND, now=T0 + CLAIM_LEASE)
    assert world.keycloak.calls[1:] == [_write(SECOND, T0 + CLAIM_LEASE)]
    assert world.keycloak.passwords == {KC_ID: SECOND}
    assert world.load(state, T0 + CLAIM_LEASE).step == "done"
    # The code was this flow's before the retry: the audit says it was a recovery.
    assert world.audit() == [("student", "account.activated", USER, {"recovered": True})]


def test_a_stale_copy_of_the_flow_is_told_to_wait_and_claims_nothing(world: World) -> None:
    state = world.flow()
    stale = world.load(state)
    world.engine.save(world.load(state))  # another request changed the flow meanwhile
    with pytest.raises(ActivationInProgress):
        activate(world.svc, world.engine, stale, FIRST, T0)
    assert world.keycloak.calls == []
    assert world.code().claimed_by is None


@pytest.mark.parametrize(
    "withdrawn",
    [
        {"revoked_at": T0 - timedelta(minutes=1)},
        {"expires_at": T0},  # expired at this very moment
        {"used_at": T0 - timedelta(minutes=1), "claimed_by": "another-flow"},
    ],
    ids=["revoked", "expired", "used-by-another-flow"],
)
def test_a_withdrawn_code_writes_nothing_and_gives_the_flow_back(
    world: World, withdrawn: dict[str, Any]
) -> None:
    state = world.flow()
    world.set_code(**withdrawn)
    with pytest.raises(ActivationImpossible):
        world.submit(state)
    assert world.keycloak.calls == []
    after = world.load(state)
    assert world.released(state) and after.step == "password"
    assert world.code().claimed_by == withdrawn.get("claimed_by")


def test_a_code_that_expires_a_second_later_still_activates(world: World) -> None:
    state = world.flow()
    world.set_code(expires_at=T0 + timedelta(seconds=1))
    world.submit(state)
    assert world.keycloak.calls == [_write()]


def test_a_live_claim_of_another_flow_stops_this_one_until_its_lease_ends(
    world: World,
) -> None:
    """Another tab or device claimed the code and died before writing: this flow waits
    out the lease (claimed exactly CLAIM_LEASE ago still holds), then takes it over."""
    state = world.flow()
    world.set_code(claimed_by="another-flow", claimed_at=T0 - CLAIM_LEASE)
    with pytest.raises(ActivationImpossible):
        world.submit(state)
    assert world.keycloak.calls == []
    code = world.code()
    assert (code.claimed_by, code.claimed_at) == ("another-flow", T0 - CLAIM_LEASE)
    assert world.released(state)
    later = T0 + timedelta(seconds=1)
    world.submit(state, now=later)
    assert world.keycloak.calls == [_write(now=later)]
    assert world.code().claimed_by == world.engine.key(state)
    # Taking over a dead flow's claim is not this flow recovering its own write.
    assert world.audit() == [("student", "account.activated", USER, {"recovered": False})]


def test_an_account_activated_another_way_is_not_touched(world: World) -> None:
    state = world.flow()
    world.keycloak.active.add(KC_ID)
    world.keycloak.passwords[KC_ID] = "theirs"
    with pytest.raises(ActivationImpossible):
        world.submit(state)
    assert world.keycloak.calls == [_write()]  # no password set afterwards
    assert world.keycloak.passwords == {KC_ID: "theirs"}
    code = world.code()
    assert (code.used_at, code.claimed_by, code.claimed_at) == (None, None, None)
    assert world.released(state)
    assert world.audit() == []


def test_keycloak_down_before_the_write_keeps_the_code_for_this_flows_retry(
    world: World,
) -> None:
    state = world.flow()
    world.keycloak.faults["activate"] = IdentityServiceUnavailable("down")
    with pytest.raises(IdentityServiceUnavailable):
        world.submit(state)
    assert world.code().claimed_by == world.engine.key(state)  # the write may have landed
    assert world.released(state)  # the student may retry at once
    assert world.code().used_at is None
    world.submit(state)
    assert world.keycloak.calls == [_write(), _write()]
    assert world.code().used_at == T0
    assert world.load(state).step == "done"


def test_a_lost_answer_after_the_write_is_recovered_with_the_password_typed_again(
    world: World,
) -> None:
    state = world.flow()
    world.keycloak.lose_answer = True
    with pytest.raises(IdentityServiceUnavailable):
        world.submit(state)
    assert world.code().used_at is None  # active in Keycloak, the code not yet consumed
    world.submit(state, SECOND)
    assert world.keycloak.calls == [_write(), _write(SECOND), ("set_password", KC_ID, SECOND)]
    assert world.keycloak.passwords == {KC_ID: SECOND}  # the password typed last holds
    assert world.code().used_at == T0
    assert world.load(state).step == "done"
    assert world.audit() == [("student", "account.activated", USER, {"recovered": True})]


def test_a_refusal_gives_both_claims_back(world: World) -> None:
    """Keycloak refused (its password policy): nothing was written, so another tab of the
    student may activate at once, and this one may try again."""
    state = world.flow()
    world.keycloak.faults["activate"] = PasswordRejected(
        "too weak", "invalidPasswordMinLengthMessage"
    )
    with pytest.raises(PasswordRejected):
        world.submit(state)
    code = world.code()
    assert (code.claimed_by, code.claimed_at, code.used_at) == (None, None, None)
    assert world.released(state)
    other = world.flow()
    world.submit(other, SECOND)
    assert world.keycloak.passwords == {KC_ID: SECOND}
    # The refused flow comes back later: the code is spent, the account is not its own.
    with pytest.raises(ActivationImpossible):
        world.submit(state, now=T0 + timedelta(seconds=5))
    assert [c[0] for c in world.keycloak.calls] == ["activate", "activate"]
    assert world.keycloak.passwords == {KC_ID: SECOND}


def test_a_refusal_after_this_flows_earlier_write_keeps_the_code_claim(world: World) -> None:
    state = world.flow()
    world.keycloak.lose_answer = True
    with pytest.raises(IdentityServiceUnavailable):
        world.submit(state)
    # The recovery's password write is refused: the claim still marks the earlier write.
    world.keycloak.faults["set_password"] = PasswordRejected("too weak", "invalidPassword")
    with pytest.raises(PasswordRejected):
        world.submit(state, SECOND)
    assert world.code().claimed_by == world.engine.key(state)
    assert world.released(state)
    world.submit(state, SECOND)
    assert world.keycloak.passwords == {KC_ID: SECOND}
    assert world.load(state).step == "done"


def test_an_account_gone_from_keycloak_gives_both_claims_back(world: World) -> None:
    state = world.flow()
    world.keycloak.faults["activate"] = UserNotFound("gone")
    with pytest.raises(ActivationImpossible):
        world.submit(state)
    code = world.code()
    assert (code.claimed_by, code.claimed_at) == (None, None)
    assert world.released(state)


def test_a_crash_after_consuming_the_code_finishes_with_the_password_typed_last(
    world: World,
) -> None:
    """The request died between consuming the code and moving the flow to "done": the
    next submit of the flow (after the lease) sets the password it carries, on the account
    this flow made active, and finishes."""
    state = world.flow()
    key = world.engine.key(state)
    claimed = world.load(state)
    claimed.data.claim = T0.isoformat()
    world.engine.save(claimed, now=T0)
    world.set_code(used_at=T0, claimed_by=key, claimed_at=T0)
    world.keycloak.active.add(KC_ID)
    later = T0 + CLAIM_LEASE
    world.submit(state, SECOND, now=later)
    assert world.keycloak.calls == [("get_user", KC_ID), ("set_password", KC_ID, SECOND)]
    assert world.keycloak.passwords[KC_ID] == SECOND
    assert world.load(state, later).step == "done"
    assert world.code().used_at == T0
    assert world.audit() == []  # recorded by the request that consumed it


def test_a_parallel_request_that_finished_the_flow_first_stands(world: World) -> None:
    """While this submit waits on Keycloak, another request of the flow moves it on: the
    write still counts, and neither the release nor "done" overwrites the other's."""
    state = world.flow()

    def other_request() -> None:
        world.keycloak.during = None
        moved = world.load(state)
        moved.data.accepted_policies = ["other"]
        world.engine.complete(moved)

    world.keycloak.during = other_request
    world.submit(state)
    assert world.code().used_at == T0
    assert world.load(state).data.accepted_policies == ["other"]
    # The same while a refusal gives the flow's claim back.
    second = world.flow()
    world.set_code(used_at=None, claimed_by=None, claimed_at=None)
    world.keycloak.active.clear()

    def other_then_refusal() -> None:
        world.keycloak.during = None
        moved = world.load(second)
        moved.data.accepted_policies = ["other"]
        world.engine.save(moved)

    world.keycloak.during = other_then_refusal
    world.keycloak.faults["activate"] = PasswordRejected(
        "too weak", "invalidPasswordMinLengthMessage"
    )
    with pytest.raises(PasswordRejected):
        world.submit(second)
    assert world.load(second).data.accepted_policies == ["other"]
    assert world.code().claimed_by is None


def test_a_code_purged_meanwhile_writes_nothing(world: World) -> None:
    state = world.flow()
    with world.sessions.begin() as session:
        session.delete(session.get(ActivationCode, world.code_id))
    with pytest.raises(ActivationImpossible):
        world.submit(state)
    assert world.keycloak.calls == []
    assert world.released(state)


def test_a_crash_after_consuming_finishes_even_once_the_code_has_expired(world: World) -> None:
    """The code ran out while the claim's lease did: it was spent by this flow before,
    so the flow still finishes (an unspent expired code would not)."""
    state = world.flow()
    key = world.engine.key(state)
    world.set_code(used_at=T0, claimed_by=key, claimed_at=T0, expires_at=T0 + timedelta(minutes=1))
    world.keycloak.active.add(KC_ID)
    later = T0 + CLAIM_LEASE
    world.submit(state, now=later)
    assert world.keycloak.calls == [("get_user", KC_ID), ("set_password", KC_ID, FIRST)]
    assert world.load(state, later).step == "done"


def test_a_crash_after_consuming_never_sets_a_password_on_an_account_set_back_to_pending(
    world: World,
) -> None:
    state = world.flow()
    key = world.engine.key(state)
    world.set_code(used_at=T0, claimed_by=key, claimed_at=T0)  # the help desk reset it since
    later = T0 + CLAIM_LEASE
    with pytest.raises(ActivationImpossible):
        world.submit(state, SECOND, now=later)
    assert world.keycloak.calls == [("get_user", KC_ID)]
    assert KC_ID not in world.keycloak.passwords


def test_the_claim_takes_only_this_flows_code(world: World) -> None:
    with world.sessions.begin() as session:
        enrol(
            session,
            world.hasher,
            user_id="dc67890",
            date_of_birth=date(2007, 1, 2),
            id_number="B9876",
        )
        issue_code(session, world.hasher, "dc67890", now=T0 - timedelta(days=1))
    world.submit(world.flow())
    with world.sessions() as session:
        other = session.scalars(
            select(ActivationCode).where(ActivationCode.user_id == "dc67890")
        ).one()
    assert (other.claimed_by, other.claimed_at, other.used_at) == (None, None, None)


def test_a_request_that_outlived_its_lease_gives_back_nothing_it_no_longer_holds(
    world: World,
) -> None:
    """While this request waited on Keycloak past the lease, another flow took the code
    over; then Keycloak refused this one: the other flow's claim stands."""
    state = world.flow()
    taken_at = T0 + CLAIM_LEASE + timedelta(seconds=1)

    def another_flow_takes_over() -> None:
        world.keycloak.during = None
        world.set_code(claimed_by="another-flow", claimed_at=taken_at)

    world.keycloak.during = another_flow_takes_over
    world.keycloak.faults["activate"] = PasswordRejected("too weak", "invalidPassword")
    with pytest.raises(PasswordRejected):
        world.submit(state)
    code = world.code()
    assert (code.claimed_by, code.claimed_at) == ("another-flow", taken_at)


def test_a_flow_without_accepted_policies_sends_an_empty_list(world: World) -> None:
    state = world.flow()
    bare = world.load(state)
    bare.data.accepted_policies = []
    world.engine.save(bare, now=T0)
    world.submit(state)
    assert world.keycloak.calls[0][3] == {ACCEPTED_POLICIES: []}


def test_the_lease_outlives_a_request() -> None:
    # Longer than a request's Keycloak round (UMPASS_KC_TIMEOUT each way): a live
    # request's claim is never taken over.
    assert timedelta(seconds=60) < activation.CLAIM_LEASE <= timedelta(minutes=5)


# -- the event for downstream systems (provider/events) --------------------------------


def _events(world: World) -> list[tuple[str, str, dict]]:
    with world.sessions() as session:
        rows = session.scalars(select(OutboxEvent).order_by(OutboxEvent.id))
        return [(e.type, e.user_id, e.payload) for e in rows]


def test_the_activation_writes_one_event_for_downstream_without_secrets(world: World) -> None:
    state = world.flow()
    world.submit(state)
    assert _events(world) == [
        (
            "student.activated",
            USER,
            {
                "user_id": USER,
                "at": T0.isoformat(),
                "keycloak_id": KC_ID,
                "activation_state": "active",
                "changed": ["password", "activation_state"],
                # The email on record is verified; the new phone is not proven yet.
                "verified_contacts": ["email"],
            },
        )
    ]
    # Another flow of the same student later is refused, and writes no second event.
    with pytest.raises(ActivationImpossible):
        world.submit(world.flow())  # another flow of the student: not its activation
    assert len(_events(world)) == 1


def test_a_failure_after_the_event_in_the_last_transaction_leaves_no_event(world: World) -> None:
    """The event is in the transaction that consumes the code: when that transaction fails
    after the event's INSERT (here the evidence's, which comes after it), there is no event,
    no consumed code, no audit; the student's retry writes all of them, once."""
    with world.sessions.begin() as session:
        session.execute(
            text(
                "CREATE TRIGGER crash BEFORE INSERT ON policy_acceptances "
                "BEGIN SELECT RAISE(ABORT, 'crash'); END"
            )
        )
    state = world.flow()
    with pytest.raises(DBAPIError):
        world.submit(state)
    assert world.keycloak.active == {KC_ID}  # the Keycloak write had landed
    assert _events(world) == []
    assert world.code().used_at is None
    assert world.audit() == []
    with world.sessions.begin() as session:
        session.execute(text("DROP TRIGGER crash"))
    later = T0 + CLAIM_LEASE + timedelta(seconds=1)
    world.submit(state, SECOND, now=later)
    assert [(t, u) for t, u, _ in _events(world)] == [("student.activated", USER)]
    assert world.code().used_at == later
    assert world.audit() == [("student", "account.activated", USER, {"recovered": True})]
