from datetime import UTC, datetime, timedelta

import pytest

from provider.flows.engine import FlowConflict, FlowEngine

STEPS = ("identify", "policies", "password", "done")
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture
def engine(sessions, hasher) -> FlowEngine:
    return FlowEngine(sessions, hasher, STEPS, idle=timedelta(minutes=30))


def test_new_flow_starts_at_the_first_step(engine: FlowEngine) -> None:
    state = engine.load_or_start(None, T0)
    assert (state.step, state.is_new, state.replaced_expired) == ("identify", True, False)
    assert len(state.flow_id) >= 32
    again = engine.load_or_start(state.flow_id, T0 + timedelta(minutes=5))
    assert (again.flow_id, again.is_new) == (state.flow_id, False)
    assert engine.position("password") == 3


def test_idle_expiry_replaces_the_flow(engine: FlowEngine) -> None:
    state = engine.load_or_start(None, T0)
    engine.touch(state, T0 + timedelta(minutes=20))  # activity pushes expiry on
    assert not engine.load_or_start(state.flow_id, T0 + timedelta(minutes=45)).is_new
    later = engine.load_or_start(state.flow_id, T0 + timedelta(minutes=80))
    assert later.is_new and later.replaced_expired and later.flow_id != state.flow_id


def test_stale_copy_cannot_overwrite(engine: FlowEngine) -> None:
    state = engine.load_or_start(None, T0)
    copy = engine.load_or_start(state.flow_id, T0)
    engine.advance(state, T0)
    with pytest.raises(FlowConflict):
        engine.advance(copy, T0)
    assert engine.load_or_start(state.flow_id, T0).step == "policies"


def test_rotation_kills_the_old_id(engine: FlowEngine) -> None:
    state = engine.load_or_start(None, T0)
    state.data["code_id"] = 7
    rotated = engine.rotate(state, user_id="dc12345", step="policies", now=T0)
    assert rotated.flow_id != state.flow_id and rotated.data == {"code_id": 7}
    assert engine.load_or_start(state.flow_id, T0).replaced_expired  # old id is gone
    assert engine.load_or_start(rotated.flow_id, T0).user_id == "dc12345"


def test_expired_flows_are_swept_by_the_next_visitor(engine: FlowEngine, sessions) -> None:
    from provider.storage.models import Flow

    engine.load_or_start(None, T0)
    engine.load_or_start(None, T0 + timedelta(hours=1))  # a new visitor, an hour later
    with sessions() as session:
        assert session.query(Flow).count() == 1
