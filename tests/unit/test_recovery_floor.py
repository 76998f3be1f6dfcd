"""Every recovery start and resend answer is padded to one floor, whether a code went out
or a decoy was armed: shown on a clock the test drives, so nothing here depends on how
busy the machine is. (tests/recovery/test_uniform_start.py measures the real answers.)"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from flask import Flask

from provider import create_app
from provider.config import Settings
from provider.flows.engine import FlowEngine, FlowState
from provider.recovery import flow, sending
from provider.recovery.lookup import Found
from provider.recovery.state import RecoveryData
from provider.services import Services
from provider.services import services as app_services
from provider.storage import migrate
from tests.unit.test_identify_floor import DrivenClock

PHONE = "+85362345678"


@pytest.fixture
def app(offline_settings: Settings) -> Iterator[Flask]:
    app = create_app(offline_settings)
    migrate.upgrade(app_services(app).engine)
    with app.test_request_context():
        yield app


@pytest.fixture
def svc(app: Flask) -> Services:
    return app_services(app)


@pytest.fixture
def engine(svc: Services) -> FlowEngine[RecoveryData]:
    return flow.make_engine(
        flow.definition(asks_birth_date=False), svc.sessions, svc.hasher, idle=timedelta(hours=1)
    )


@pytest.fixture
def deliveries(monkeypatch: pytest.MonkeyPatch) -> list[Callable[[], None]]:
    """Messages handed to the delivery pool (kept, never sent: there is no gateway here)."""
    handed: list[Callable[[], None]] = []
    monkeypatch.setattr(sending, "deliver_later", lambda send, on_failure: handed.append(send))
    return handed


def _stored(
    svc: Services, engine: FlowEngine[RecoveryData], found: Found
) -> FlowState[RecoveryData]:
    contact = (
        sending.contact_of(svc, "phone", found.contact)
        if found.contact
        else sending.decoy_contact(svc, "phone")
    )
    data = RecoveryData(
        channel="phone",
        lock_key="r/x",
        budget_key="b",
        contact=contact,
        keycloak_id=found.keycloak_id,
    )
    start = FlowState[RecoveryData](flow_id=None, step="start")
    return engine.start_identified(start, user_id=found.user_id or "", data=data)


SENDS = Found("aa00001", "kc-aa00001", PHONE, "ok")
CASES = {
    "a code goes out": SENDS,
    "unknown": Found(None, None, None, "unknown"),
    "pending": Found("aa00002", None, None, "not_active"),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("took", [0.0, 0.01, 0.3, 0.499])
def test_an_answer_waits_out_the_rest_of_the_floor(
    svc: Services,
    engine: FlowEngine[RecoveryData],
    deliveries: list[Callable[[], None]],
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    took: float,
) -> None:
    found = CASES[case]
    state = _stored(svc, engine, found)
    clock = DrivenClock(100.0 + took)
    monkeypatch.setattr(sending, "time", clock)
    sending.send_or_arm(svc, engine, state, found, started=100.0)
    assert clock.slept == [pytest.approx(sending.ANSWER_FLOOR_SECONDS - took)]
    assert clock.readings == []  # read once, at the end
    assert len(deliveries) == (1 if found is SENDS else 0)


def test_an_answer_slower_than_the_floor_waits_no_more(
    svc: Services,
    engine: FlowEngine[RecoveryData],
    deliveries: list[Callable[[], None]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = _stored(svc, engine, SENDS)
    clock = DrivenClock(100.0 + sending.ANSWER_FLOOR_SECONDS + 0.2)
    monkeypatch.setattr(sending, "time", clock)
    sending.send_or_arm(svc, engine, state, SENDS, started=100.0)
    assert clock.slept == []


def test_the_floor_is_half_a_second() -> None:
    assert sending.ANSWER_FLOOR_SECONDS == 0.5
