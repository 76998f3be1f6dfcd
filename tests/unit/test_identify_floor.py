"""The identify step pads every failure to one duration, whatever failed and however long
the comparison took: shown on a clock the test drives, so nothing here depends on how
busy the machine is. (The real POST is measured by `scripts/bench identify-uniformity`.)"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from provider.config import Settings
from provider.flows.steps import identify_check as step
from provider.guards import lockout
from provider.services import Services
from provider.storage import migrate
from provider.storage.models import AuditEvent, IdentifyLockout


class DrivenClock:
    """`time` for the identify module: each monotonic() reading is the next one given;
    sleep() records how long it was asked to wait."""

    def __init__(self, *readings: float) -> None:
        self.readings = list(readings)
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.readings.pop(0)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


@pytest.fixture
def svc(offline_settings: Settings) -> Services:
    services = Services.assemble(offline_settings)
    migrate.upgrade(services.engine)
    return services


def _identify(svc: Services, user_id: str = "zz00000") -> None:
    # An ID nobody has: the step fails before any Keycloak call (there is none here).
    step.identify(
        svc,
        typed_user_id=user_id,
        typed_code="AAAAA-BBBBB-CCCCC",
        date_of_birth=date(2006, 2, 28),
        typed_id_last4="5678",
    )


@pytest.mark.parametrize("took", [0.0, 0.01, 0.2, 0.249])
def test_a_failure_waits_out_the_rest_of_the_floor(
    svc: Services, monkeypatch: pytest.MonkeyPatch, took: float
) -> None:
    clock = DrivenClock(100.0, 100.0 + took)
    monkeypatch.setattr(step, "time", clock)
    with pytest.raises(step.IdentifyFailed):
        _identify(svc)
    assert clock.slept == [pytest.approx(step.FAILURE_FLOOR_SECONDS - took)]
    assert clock.readings == []  # started, then finished: nothing read in between


def test_a_failure_slower_than_the_floor_waits_no_more(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = DrivenClock(100.0, 100.0 + step.FAILURE_FLOOR_SECONDS + 0.5)
    monkeypatch.setattr(step, "time", clock)
    with pytest.raises(step.IdentifyFailed):
        _identify(svc)
    assert clock.slept == []


def test_a_locked_id_is_padded_the_same_way(svc: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime.now(UTC)
    key = lockout.lock_key("zz00000")
    for _ in range(5):
        lockout.begin_attempt(svc.sessions, key, now)
        lockout.record_failure(svc.sessions, key, now)
    clock = DrivenClock(100.0, 100.03)
    monkeypatch.setattr(step, "time", clock)
    with pytest.raises(step.IdentifyLocked):
        _identify(svc)
    assert clock.slept == [pytest.approx(step.FAILURE_FLOOR_SECONDS - 0.03)]


def test_a_refused_proof_of_work_is_padded_the_same_way(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hot ID (locked twice in a row, the last lock just over) without a solved check."""
    with svc.sessions.begin() as db:
        db.add(
            IdentifyLockout(
                user_id=lockout.lock_key("zz00000"),
                failures=0,
                lock_count=2,
                locked_until=datetime.now(UTC) - timedelta(seconds=1),
            )
        )
    clock = DrivenClock(100.0, 100.02)
    monkeypatch.setattr(step, "time", clock)
    with pytest.raises(step.IdentifyFailed):
        _identify(svc)
    assert clock.slept == [pytest.approx(step.FAILURE_FLOOR_SECONDS - 0.02)]
    with svc.sessions() as db:
        reasons = db.scalars(select(AuditEvent.detail).where(AuditEvent.subject == "zz00000"))
        assert [r.get("reason") for r in reasons] == ["challenge"]  # refused for the check


def test_the_floor_is_a_quarter_second() -> None:
    assert step.FAILURE_FLOOR_SECONDS == 0.25  # README: "at least 250 ms"
