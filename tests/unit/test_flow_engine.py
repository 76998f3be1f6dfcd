import logging
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import ColumnElement, Table, and_, bindparam, update

from provider.flows.engine import MAX_LIFETIME, FlowConflict, FlowEngine, FlowState
from provider.flows.state import ActivationData
from provider.storage.models import Flow
from tests.support.flow_data import Notes

STEPS = ("identify", "policies", "password", "done")
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture
def engine(sessions, hasher) -> FlowEngine:
    return FlowEngine(sessions, hasher, STEPS, Notes, idle=timedelta(minutes=30))


def _identified(engine: FlowEngine, now: datetime = T0) -> FlowState:
    anonymous = engine.load_or_start(None, now)
    return engine.start_identified(
        anonymous, user_id="dc12345", data=Notes({"code_id": 7}), now=now
    )


def test_anonymous_visitors_store_nothing(engine: FlowEngine, sessions) -> None:
    state = engine.load_or_start(None, T0)
    assert (state.flow_id, state.step, state.is_new) == (None, "identify", False)
    with pytest.raises(FlowConflict):
        engine.advance(state, T0)  # only identify may start a stored flow
    with sessions() as session:
        assert session.query(Flow).count() == 0
    assert engine.position("password") == 3


def test_identified_flow_resumes_by_cookie(engine: FlowEngine) -> None:
    state = _identified(engine)
    assert state.is_new and len(state.flow_id or "") >= 32
    again = engine.load_or_start(state.flow_id, T0 + timedelta(minutes=5))
    assert (again.step, again.user_id, again.data, again.is_new) == (
        "policies",
        "dc12345",
        Notes({"code_id": 7}),
        False,
    )


def test_idle_expiry_and_absolute_lifetime(engine: FlowEngine) -> None:
    state = _identified(engine)
    engine.touch(
        engine.load_or_start(state.flow_id, T0 + timedelta(minutes=20)), T0 + timedelta(minutes=20)
    )
    assert engine.load_or_start(state.flow_id, T0 + timedelta(minutes=45)).flow_id
    later = engine.load_or_start(state.flow_id, T0 + timedelta(minutes=80))
    assert later.flow_id is None and later.replaced_expired
    # Kept busy, a flow still ends after MAX_LIFETIME.
    busy = _identified(engine)
    t = T0
    while t + timedelta(minutes=10) < T0 + MAX_LIFETIME:
        t += timedelta(minutes=10)
        engine.save(engine.load_or_start(busy.flow_id, t), now=t)
    assert (
        engine.load_or_start(busy.flow_id, T0 + MAX_LIFETIME + timedelta(minutes=1)).flow_id is None
    )


def test_stale_copy_cannot_overwrite(engine: FlowEngine) -> None:
    state = _identified(engine)
    copy = engine.load_or_start(state.flow_id, T0)
    engine.advance(state, T0)
    with pytest.raises(FlowConflict):
        engine.advance(copy, T0)
    assert engine.load_or_start(state.flow_id, T0).step == "password"


def test_identifying_again_replaces_the_old_id(engine: FlowEngine) -> None:
    first = _identified(engine)
    second = engine.start_identified(first, user_id="dc12345", data=Notes({}), now=T0)
    assert second.flow_id != first.flow_id
    assert engine.load_or_start(first.flow_id, T0).replaced_expired


def test_finish_forgets_the_flow(engine: FlowEngine) -> None:
    state = _identified(engine)
    engine.finish(state)
    assert engine.load_or_start(state.flow_id, T0).flow_id is None


def test_an_expired_flow_is_neither_resumed_nor_swept_by_a_student(
    engine: FlowEngine, sessions
) -> None:
    # Expired flows are deleted by `umpass purge` (tests/unit/test_purge.py), not by each
    # identify: parallel sweeps of the same rows queue behind each other on PostgreSQL.
    old = _identified(engine, T0)
    _identified(engine, T0 + timedelta(hours=1))
    assert engine.load_or_start(old.flow_id, T0 + timedelta(hours=1)).flow_id is None
    with sessions() as session:
        assert session.query(Flow).count() == 2


def _row(sessions, engine: FlowEngine, state: FlowState) -> Flow:
    with sessions() as session:
        return session.get(Flow, engine.key(state))


def test_an_identified_flow_is_stored_as_it_is_returned(engine: FlowEngine, sessions) -> None:
    state = _identified(engine)
    assert len(state.flow_id or "") == 32  # 24 random bytes: 192 bits
    assert (state.user_id, state.data, state.version) == ("dc12345", Notes({"code_id": 7}), 0)
    assert state.expires_at == T0 + timedelta(minutes=30)
    row = _row(sessions, engine, state)
    assert (row.user_id, row.step, row.state, row.version) == (
        "dc12345",
        "policies",
        {"code_id": 7},
        0,
    )
    assert (row.created_at, row.updated_at, row.expires_at) == (T0, T0, T0 + timedelta(minutes=30))
    loaded = engine.load_or_start(state.flow_id, T0)
    assert (loaded.expires_at, loaded.version) == (row.expires_at, 0)


def test_a_fresh_visitor_is_not_told_of_an_expired_flow(engine: FlowEngine) -> None:
    assert engine.load_or_start(None, T0).replaced_expired is False
    # A cookie is looked up up to 64 characters (an unknown one: "we started again");
    # a longer value is no id of ours and not even hashed.
    assert engine.load_or_start("a" * 64, T0).replaced_expired is True
    assert engine.load_or_start("a" * 65, T0).replaced_expired is False


def test_saves_write_everything_and_follow_each_other(engine: FlowEngine, sessions) -> None:
    state = _identified(engine)
    t1 = T0 + timedelta(minutes=3)
    state.data = Notes({**state.data.values, "accepted": True})
    assert engine.save(state, now=t1).version == 1
    t2 = T0 + timedelta(minutes=4)
    saved = engine.advance(state, t2)  # the same object saves again: its version followed
    assert (saved.step, saved.version) == ("password", 2)
    row = _row(sessions, engine, state)
    assert (row.user_id, row.step, row.state, row.version) == (
        "dc12345",
        "password",
        {"code_id": 7, "accepted": True},
        2,
    )
    assert (row.updated_at, row.expires_at) == (t2, t2 + timedelta(minutes=30))
    assert engine.load_or_start(state.flow_id, t2).version == 2


def test_advance_stops_at_the_last_step(engine: FlowEngine) -> None:
    state = _identified(engine)
    engine.advance(state, T0)
    assert engine.advance(state, T0).step == "done"
    assert engine.advance(state, T0).step == "done"


def test_touch_writes_at_most_once_a_minute(engine: FlowEngine, sessions) -> None:
    state = _identified(engine)
    engine.touch(state, T0 + timedelta(seconds=59))
    row = _row(sessions, engine, state)
    assert (row.updated_at, row.expires_at) == (T0, T0 + timedelta(minutes=30))
    t = T0 + timedelta(minutes=1)
    engine.touch(state, t)
    row = _row(sessions, engine, state)
    assert (row.updated_at, row.expires_at) == (t, t + timedelta(minutes=30))
    engine.touch(FlowState(flow_id=None, step="identify"), t)  # nothing stored: nothing to do


def test_without_a_time_the_engine_uses_the_clock(engine: FlowEngine, sessions) -> None:
    before = datetime.now(UTC)
    state = engine.start_identified(engine.load_or_start(None), user_id="dc12345", data=Notes({}))
    loaded = engine.load_or_start(state.flow_id)
    assert loaded.flow_id == state.flow_id
    loaded.expires_at = None  # as if a minute had passed: touch writes
    engine.touch(loaded)
    engine.advance(loaded)
    row = _row(sessions, engine, state)
    after = datetime.now(UTC)
    assert before <= row.created_at <= row.updated_at <= after
    assert row.step == "password"


@pytest.mark.parametrize(
    "change",
    [{"state": {"code_id": 7}}, {"state": {"code_id": "x", "keycloak_id": "k"}}, {"step": "gone"}],
    ids=["a-field-missing", "a-field-unreadable", "a-step-this-version-lacks"],
)
def test_a_flow_this_version_cannot_read_starts_again(sessions, hasher, change, caplog) -> None:
    """Written by another version of the service (a rollback, a renamed step): the student
    starts again with the usual message, never an error on every page."""
    engine = FlowEngine(sessions, hasher, STEPS, ActivationData, idle=timedelta(minutes=30))
    stored = engine.start_identified(
        engine.load_or_start(None, T0),
        user_id="dc12345",
        data=ActivationData(code_id=7, keycloak_id="k"),
        now=T0,
    )
    assert engine.load_or_start(stored.flow_id, T0).data == ActivationData(7, "k")
    with sessions.begin() as session:
        session.execute(update(Flow).where(Flow.id_hash == engine.key(stored)).values(**change))
    with caplog.at_level(logging.WARNING, logger="provider.flows.engine"):
        again = engine.load_or_start(stored.flow_id, T0)
    # Told to operators (a mixed-version deployment), without the flow's contents.
    if change.get("step") != "gone":
        (record,) = caplog.records
        assert record.getMessage() == "stored flow unreadable; starting again"
        assert record.__dict__.get("outcome") == "replaced"
    assert (again.flow_id, again.step, again.data, again.replaced_expired) == (
        None,
        "identify",
        None,
        True,
    )


def test_activation_data_keeps_the_keys_older_replicas_read() -> None:
    """A rolling upgrade: what one version writes, the other resumes (same JSON keys)."""
    data = ActivationData(code_id=7, keycloak_id="k", caller={"state": "s"}, activated=True)
    raw = data.to_json()
    assert raw["oidc_request"] == {"state": "s"} and raw["activated"] is True
    assert ActivationData.from_json(raw) == data


def test_replaced_contacts_are_kept_and_written_only_when_there_are_some() -> None:
    """The contacts step's "replaced" marks survive a reload (a retry's events say them);
    a flow with none writes no key, so an older replica reads it as before."""
    data = ActivationData(code_id=7, keycloak_id="k", replaced=["email"])
    assert ActivationData.from_json(data.to_json()) == data
    assert "replaced" not in ActivationData(code_id=7, keycloak_id="k").to_json()


@pytest.mark.parametrize("stored", [("x", None), (None, Notes({}))], ids=["no-data", "no-id"])
def test_a_flow_missing_its_id_or_its_data_is_never_written(engine, stored) -> None:
    flow_id, data = stored
    state = FlowState(flow_id=flow_id, step="policies", user_id="dc12345", data=data)
    for write in (engine.save, engine.advance, engine.complete):
        with pytest.raises(FlowConflict):
            write(state, T0)


def _code_at_least(flows: Table) -> ColumnElement[bool]:
    """A condition on the flow's row, with the load's "now": the stored code_id is 7 or
    more and the flow was made no later than now."""
    return and_(flows.c.state["code_id"].as_integer() >= 7, flows.c.created_at <= bindparam("now"))


def _code_above(flows: Table) -> ColumnElement[bool]:
    return flows.c.state["code_id"].as_integer() > 7


def test_what_the_flow_stands_on_is_read_with_it(engine: FlowEngine) -> None:
    """`stands` is a condition on the flow's row, checked in the statement that loads it;
    each condition keeps a statement of its own."""
    state = _identified(engine)
    later = T0 + timedelta(minutes=1)
    assert engine.load_or_start(state.flow_id, later).stands is True  # nothing asked first
    assert engine.load_or_start(state.flow_id, later, stands=_code_at_least).stands is True
    assert engine.load_or_start(state.flow_id, later, stands=_code_above).stands is False
    assert engine.load_or_start(state.flow_id, later, stands=_code_at_least).stands is True
    # The load's own time is the "now" the condition sees.
    earlier = T0 - timedelta(minutes=1)
    assert engine.load_or_start(state.flow_id, earlier, stands=_code_at_least).stands is False
    assert engine.load_or_start(state.flow_id, later).stands is True  # nothing asked


def test_advance_runs_along_in_its_own_transaction(engine: FlowEngine, sessions) -> None:
    """`along` writes beside the step's move, in the same transaction: both or neither."""
    state = _identified(engine)
    touched: list[str] = []

    def along(conn) -> None:
        conn.execute(update(Flow.__table__).values(user_id="changed-along"))
        touched.append(state.step)

    moved = engine.advance(state, T0, along=along)
    assert (moved.step, touched) == ("password", ["policies"])
    assert _row(sessions, engine, state).user_id == "changed-along"
    stale = FlowState(
        flow_id=state.flow_id, step="password", user_id="dc12345", data=state.data, version=0
    )
    with pytest.raises(FlowConflict):
        engine.advance(stale, T0, along=along)  # the write lost: along never ran
    assert touched == ["policies"]


def test_back_to_moves_to_an_earlier_step_only(engine: FlowEngine, sessions) -> None:
    """A step whose result stopped holding: the flow goes back to it, written like any
    move (compare-and-set, `along` in the same transaction)."""
    state = _identified(engine)
    engine.advance(state, T0)  # at password
    with pytest.raises(ValueError, match="not before"):
        engine.back_to(state, "password", T0)  # not back: where it is
    with pytest.raises(ValueError, match="not before"):
        engine.back_to(state, "done", T0)
    audited: list[str] = []
    moved = engine.back_to(state, "policies", T0, along=lambda conn: audited.append("x"))
    assert (moved.step, moved.version, audited) == ("policies", 2, ["x"])
    row = _row(sessions, engine, state)
    assert (row.step, row.version, row.updated_at) == ("policies", 2, T0)
    stale = FlowState(
        flow_id=state.flow_id, step="password", user_id="dc12345", data=state.data, version=1
    )
    with pytest.raises(FlowConflict):
        engine.back_to(stale, "policies", T0)
