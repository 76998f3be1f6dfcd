"""Step 1, identify, from a browser with no flow: one request each. Every kind of mismatch
answered alike: tests/integration/test_identify_uniformity.py; the lock:
tests/integration/test_activation_flow.py; the proof-of-work check:
tests/integration/test_identify_challenge.py."""

from __future__ import annotations

import html
import re
from datetime import date

import pytest
from flask import Flask
from keycloak import KeycloakAdmin
from sqlalchemy import select, update

from provider.date_input import form_fields
from provider.flows.engine import FLOW_COOKIE
from provider.flows.state import OnRecord
from provider.keycloak import (
    ACTIVATION_STATE,
    ADMIN_CALLS,
    PHONE_NUMBER,
    STATE_PENDING,
)
from provider.services import Services
from provider.storage.models import ActivationCode, Flow, IdentifyLockout, Student
from tests.support.flow_at import StepClient, identified_data
from tests.support.flow_client import StudentDetails
from tests.support.students import enrol_student

DATE_BOXES = ("date_of_birth-day", "date_of_birth-month", "date_of_birth-year")
REAL = "Date of birth must be a real date, for example 27 3 2007"
FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


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
    for name in ("user_id", "activation_code", "id_last4", "csrf_token", *DATE_BOXES):
        assert f'name="{name}"' in body
    assert "altcha-widget" not in body  # no check for a fresh ID
    # The date: three labelled boxes in a group named by its legend, never the
    # browser's own date picker (which shows the browser locale's order).
    assert 'type="date"' not in body
    assert '<legend class="label">Date of birth</legend>' in body
    assert "For example, 27 3 2007" in body
    for part in ("day", "month", "year"):
        box = _box(body, part)
        assert 'inputmode="numeric"' in box and f'autocomplete="bday-{part}"' in box
        assert f'<label class="date-input__label" for="date_of_birth-{part}">' in body


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


def _box(body: str, part: str) -> str:
    found = re.search(rf'<input [^>]*id="date_of_birth-{part}"[^>]*>', body)
    assert found, part
    return found.group(0)


def _date_answer(
    browser: StepClient, student: StudentDetails, day: str, month: str, year: str
) -> tuple[str, str, list[str]]:
    """The message by the date, where the summary links, and the boxes marked wrong."""
    typed = {"date_of_birth-day": day, "date_of_birth-month": month, "date_of_birth-year": year}
    response = browser.identify(student, **typed)
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    message = re.search(
        r'<p class="error-message" id="date_of_birth-error">.*?</span> ([^<]+)', body
    )
    link = re.search(r'<a href="#(date_of_birth[^"]*)">', body)
    assert message and link, body
    marked = [part for part in ("day", "month", "year") if "aria-invalid" in _box(body, part)]
    for name, value in typed.items():  # what was typed stays, escaped
        shown = re.search(r'value="([^"]*)"', _box(body, name.rsplit("-", 1)[1]))
        assert shown and html.unescape(shown.group(1)) == value
    return message.group(1), link.group(1), marked


@pytest.mark.parametrize(
    ("typed", "message", "marked"),
    [
        (("", "", ""), "Enter your date of birth", ["day", "month", "year"]),
        (("", "3", "2007"), "Date of birth must include a day", ["day"]),
        (("27", "", ""), "Date of birth must include a month and year", ["month", "year"]),
        (("30", "2", "2007"), REAL, ["day"]),
        (
            ("27", "13", "2007"),
            REAL,
            ["month"],
        ),
        (
            ("x", "3", "2oo7"),
            REAL,
            ["day", "year"],
        ),
        (("27", "3", "07"), "Year must include 4 numbers, for example 2007", ["year"]),
        (("27", "3", "2999"), "Date of birth must be in the past", ["day", "month", "year"]),
        (
            ('"><b>', "3", "2007"),
            REAL,
            ["day"],
        ),
    ],
)
def test_a_date_that_cannot_be_one_is_named_in_day_month_year_order_at_its_box(
    browser: StepClient,
    student: StudentDetails,
    services: Services,
    typed: tuple[str, str, str],
    message: str,
    marked: list[str],
) -> None:
    said, link, wrong = _date_answer(browser, student, *typed)
    assert (said, wrong) == (message, marked)
    assert link == f"date_of_birth-{marked[0]}"  # the summary leads to the first wrong box
    _nothing_stored(browser, services, student)


def test_full_width_digits_are_a_date(
    browser: StepClient, student: StudentDetails, services: Services
) -> None:
    born = student.date_of_birth
    typed = {
        "date_of_birth-day": str(born.day).translate(FULL_WIDTH),
        "date_of_birth-month": f" {born.month} ",
        "date_of_birth-year": str(born.year).translate(FULL_WIDTH),
    }
    response = browser.identify(student, **typed)
    assert response.status_code == 302 and response.location.endswith("/activate/policies")


def test_a_real_date_that_is_not_theirs_is_the_one_uniform_failure(
    browser: StepClient, student: StudentDetails
) -> None:
    """Only a date that cannot be one is a form error: a wrong real date says nothing
    about which detail was wrong (tests/integration/test_identify_uniformity.py)."""
    response = browser.identify(student, **form_fields(date(2006, 2, 27)))
    body = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "We could not match those details" in body
    assert 'id="date_of_birth-error"' not in body and "aria-invalid" not in body


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


def _identified_as(browser: StepClient) -> tuple[str | None, str | None]:
    """The user ID and Keycloak account of the flow the browser was just given."""
    cookie = browser.client.get_cookie(FLOW_COOKIE, path="/activate")
    assert cookie is not None
    state = browser.engine.load_or_start(cookie.value)
    return state.user_id, state.data.keycloak_id if state.data else None


def _admin_calls(action: str) -> float:
    return ADMIN_CALLS.labels(action)._value.get()


def _stored_id(services: Services, user_id: str) -> str | None:
    with services.reads() as db:
        student = db.get(Student, user_id)
        return student.keycloak_id if student else None


def test_identify_reads_the_account_by_the_id_stored_at_enrolment(
    browser: StepClient, student: StudentDetails, services: Services
) -> None:
    """One read by id, never a search by username: under fine-grained admin permissions a
    search costs Keycloak ~20x the CPU of a read (scripts/bench activation)."""
    searches = _admin_calls("find_user")
    assert _stored_id(services, student.user_id) is not None
    response = browser.identify(student)
    assert response.status_code == 302 and response.location.endswith("/activate/policies")
    assert _admin_calls("find_user") == searches


def test_a_stored_id_that_names_another_account_is_never_trusted(
    browser: StepClient, services: Services
) -> None:
    """The stored id is a hint: an id that reads another account (a stale or tampered
    row) is checked against the username, and the account found by username is the one
    identified (and remembered)."""
    student, other = enrol_student(services, "k"), enrol_student(services, "k")
    real, others = _stored_id(services, student.user_id), _stored_id(services, other.user_id)
    with services.sessions.begin() as db:
        db.execute(
            update(Student).where(Student.user_id == student.user_id).values(keycloak_id=others)
        )
    response = browser.identify(student)
    assert response.status_code == 302 and response.location.endswith("/activate/policies")
    assert real != others
    assert _identified_as(browser) == (student.user_id, real)
    assert _stored_id(services, student.user_id) == real


def test_an_account_made_again_is_found_by_username(
    browser: StepClient, services: Services, admin: KeycloakAdmin
) -> None:
    """An account deleted and made again (a new id) is found by its username, and its new
    id remembered."""
    student = enrol_student(services, "k")
    old = _stored_id(services, student.user_id)
    assert old is not None
    admin.delete_user(old)
    made_again = services.keycloak.create_user(
        student.user_id,
        email=student.email,
        attributes={ACTIVATION_STATE: [STATE_PENDING], PHONE_NUMBER: [student.phone]},
    )
    response = browser.identify(student)
    assert response.status_code == 302 and response.location.endswith("/activate/policies")
    assert _identified_as(browser) == (student.user_id, made_again)
    assert _stored_id(services, student.user_id) == made_again
