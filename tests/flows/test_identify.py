"""Step 1, identify, from a browser with no flow: one request each. Every kind of mismatch
answered alike: tests/integration/test_identify_uniformity.py; the lock:
tests/integration/test_activation_flow.py; the proof-of-work check:
tests/integration/test_identify_challenge.py."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import select

from provider.flows.engine import FLOW_COOKIE
from provider.flows.state import OnRecord
from provider.keycloak import STATE_PENDING
from provider.services import Services
from provider.storage.models import ActivationCode, Flow, IdentifyLockout
from tests.support.flow_at import StepClient, identified_data
from tests.support.flow_client import StudentDetails


def _nothing_stored(browser: StepClient, services: Services, student: StudentDetails) -> None:
    assert browser.client.get_cookie(FLOW_COOKIE, path="/activate") is None
    with services.reads() as db:
        assert db.scalars(select(Flow).where(Flow.user_id == student.user_id)).all() == []
        assert db.get(IdentifyLockout, student.user_id) is None  # not even counted
    user = services.keycloak.find_user(student.user_id)
    assert user is not None and user.activation_state == STATE_PENDING


def test_the_page_asks_for_the_four_details(browser: StepClient) -> None:
    page = browser.page("identify")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "Step 1 of 5" in body
    for name in ("user_id", "activation_code", "date_of_birth", "id_last4", "csrf_token"):
        assert f'name="{name}"' in body
    assert 'type="date"' in body and "altcha-widget" not in body  # no check for a fresh ID


def test_missing_details_are_each_named_and_nothing_is_counted(
    browser: StepClient, student: StudentDetails, services: Services
) -> None:
    response = browser.submit("identify", {"user_id": student.user_id, "activation_code": ""})
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert "There is a problem" in body
    for message in (
        "Enter your activation code",
        "Enter your date of birth",
        "Enter the last 4 characters of your ID",
    ):
        assert message in body
    assert "Enter your user ID" not in body
    _nothing_stored(browser, services, student)


def test_impossible_date_gets_a_plain_message(
    browser: StepClient, student: StudentDetails, services: Services
) -> None:
    response = browser.identify(student, date_of_birth="2007-02-30")
    assert response.status_code == 400
    assert "Enter your date of birth as a real date" in response.get_data(as_text=True)
    _nothing_stored(browser, services, student)


def test_the_right_details_start_a_flow_at_the_policies(
    app: Flask, browser: StepClient, student: StudentDetails, services: Services
) -> None:
    response = browser.identify(student)
    assert response.status_code == 302 and response.location.endswith("/activate/policies")
    cookie = browser.client.get_cookie(FLOW_COOKIE, path="/activate")
    assert cookie is not None
    state = browser.engine.load_or_start(cookie.value)
    assert (state.step, state.user_id, state.version) == ("policies", student.user_id, 0)
    user = services.keycloak.find_user(student.user_id)
    assert user is not None and user.activation_state == STATE_PENDING
    with services.reads() as db:
        code = db.scalars(
            select(ActivationCode).where(ActivationCode.user_id == student.user_id)
        ).one()
    data = state.data
    assert data is not None
    assert (data.code_id, data.keycloak_id) == (code.id, user.id)
    assert data.on_record == {
        "email": OnRecord(f"{student.user_id[0]}•••@example.edu", False),
        "phone": OnRecord(f"+853 ••••{student.phone[-4:]}", False),
    }
    assert data.hints == ["Kit", "Wong", student.user_id]
    assert (data.accepted_policies, data.pending, data.claim) == ([], None, None)
    # What tests/support/flow_at.py puts into the flows it makes is exactly this.
    assert identified_data(app, student) == (student.user_id, data)
