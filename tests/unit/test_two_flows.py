"""Two flows on one engine table: neither resumes the other's row, whatever cookie a
browser sends where."""

from __future__ import annotations

from datetime import timedelta

from provider.flows.activation import ACTIVATION, make_engine
from provider.flows.engine import FlowState
from provider.flows.state import ActivationData
from provider.recovery import flow as recovery
from provider.recovery.state import RecoveryData


def test_the_flows_step_names_are_disjoint() -> None:
    for asks in (False, True):
        names = {s.name for s in recovery.steps(asks_birth_date=asks)}
        assert names.isdisjoint(ACTIVATION.by_name), "a row of one flow would resume in the other"
        assert recovery.definition(asks_birth_date=asks).cookie != ACTIVATION.cookie


def test_a_recovery_row_is_never_resumed_as_an_activation(sessions, hasher) -> None:
    definition = recovery.definition(asks_birth_date=False)
    recovering = recovery.make_engine(definition, sessions, hasher, idle=timedelta(minutes=30))
    activating = make_engine(sessions, hasher, idle=timedelta(minutes=30))
    stored = recovering.start_identified(
        FlowState[RecoveryData](flow_id=None, step="start"),
        user_id="dc12345",
        data=RecoveryData(channel="email", lock_key="r/dc12345", budget_key="k", contact="c"),
    )
    as_activation = activating.load_or_start(stored.flow_id)
    assert (as_activation.flow_id, as_activation.user_id, as_activation.step) == (
        None,
        None,
        "identify",
    )
    assert recovering.load_or_start(stored.flow_id).step == "code"


def test_an_activation_row_is_never_resumed_as_a_recovery(sessions, hasher) -> None:
    definition = recovery.definition(asks_birth_date=True)
    recovering = recovery.make_engine(definition, sessions, hasher, idle=timedelta(minutes=30))
    activating = make_engine(sessions, hasher, idle=timedelta(minutes=30))
    stored = activating.start_identified(
        FlowState[ActivationData](flow_id=None, step="identify"),
        user_id="dc12345",
        data=ActivationData(code_id=1, keycloak_id="00000000-0000-0000-0000-000000000000"),
    )
    as_recovery = recovering.load_or_start(stored.flow_id)
    assert (as_recovery.flow_id, as_recovery.user_id, as_recovery.step) == (None, None, "start")
