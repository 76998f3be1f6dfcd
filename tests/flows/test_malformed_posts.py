"""Posts no page of ours sends, on identify and contacts: each is answered 400 with the
step's form again and a plain sentence, and changes nothing (identify counts no try;
contacts moves no stage). Every form, fuzzed: tests/integration/test_form_fuzz.py."""

from __future__ import annotations

import pytest
from flask import Flask

from provider.date_input import form_fields
from provider.services import Services
from provider.storage.models import IdentifyLockout
from tests.support.flow_at import FlowAt, StepClient
from tests.support.flow_client import StudentDetails
from tests.support.malformed import Post, malformed_posts, multipart, oversized

REFUSED = "We could not read the form that was sent"


def _identify_fields(student: StudentDetails) -> dict[str, str]:
    return {
        "user_id": student.user_id,
        "activation_code": student.code,
        **form_fields(student.date_of_birth),
        "id_last4": student.id_last4,
    }


_CONTACTS_FIELDS = {
    "action": "choose",
    "email_choice": "keep",
    "new_email": "someone.new@gmail.com",
    "phone_choice": "keep",
    "new_phone": "",
}


def _names(fields: dict[str, str], text_field: str) -> list[str]:
    # The case names, for the parametrisation (the posts themselves need the token).
    return [p.name for p in malformed_posts(fields, "t", text_field)]


def _case(fields: dict[str, str], token: str, text_field: str, name: str) -> Post:
    return next(p for p in malformed_posts(fields, token, text_field) if p.name == name)


_STUDENT_SHAPE = {
    "user_id": "x",
    "activation_code": "x",
    "date_of_birth-day": "x",
    "date_of_birth-month": "x",
    "date_of_birth-year": "x",
    "id_last4": "x",
}


# Each case abuses the activation code (the post names the real student, so a try counted
# would show as a lock row); the file case also each other text field.
IDENTIFY_CASES = [
    *[("activation_code", c) for c in _names(_STUDENT_SHAPE, "activation_code")],
    *[(f, "file in a text field") for f in ("user_id", "id_last4", "date_of_birth-day")],
]


@pytest.mark.parametrize(("text_field", "case"), IDENTIFY_CASES)
def test_identify_answers_a_malformed_post_with_its_form_and_counts_nothing(
    browser: StepClient,
    student: StudentDetails,
    services: Services,
    case: str,
    text_field: str,
) -> None:
    post = _case(_identify_fields(student), browser.token, text_field, case)
    response = browser.client.post("/activate/identify", **post.for_client(browser.token))
    assert response.status_code == 400, (case, response.status_code)
    body = response.get_data(as_text=True)
    assert 'name="user_id"' in body and 'name="csrf_token"' in body  # the form again
    with services.reads() as db:
        assert db.get(IdentifyLockout, student.user_id) is None  # no try counted
    # Nothing identified: the page is still identify's, the student still pending.
    assert browser.client.get_cookie("umpass_flow", path="/activate") is None


def test_identify_names_why_a_malformed_post_was_refused(
    browser: StepClient, student: StudentDetails
) -> None:
    post = _case(_identify_fields(student), browser.token, "user_id", "file in a text field")
    response = browser.client.post("/activate/identify", **post.for_client(browser.token))
    assert response.status_code == 400
    assert REFUSED in response.get_data(as_text=True)


def test_identify_over_the_request_size_is_413(
    browser: StepClient, student: StudentDetails
) -> None:
    post = oversized(_identify_fields(student), browser.token, "user_id")
    response = browser.client.post("/activate/identify", **post.for_client(browser.token))
    assert response.status_code == 413


@pytest.fixture
def at_contacts(flow_at: FlowAt, student: StudentDetails) -> StepClient:
    return flow_at("contacts", student)


# Each case abuses the new email (beside "keep": read, it would be ignored and the page
# move on to proving the contacts on record); the file case also each other field.
CONTACTS_CASES = [
    *[("new_email", c) for c in _names(_CONTACTS_FIELDS, "new_email")],
    *[(f, "file in a text field") for f in ("new_phone", "email_choice", "action")],
]


@pytest.mark.parametrize(("text_field", "case"), CONTACTS_CASES)
def test_contacts_answers_a_malformed_post_with_its_form_and_moves_nothing(
    at_contacts: StepClient, case: str, text_field: str
) -> None:
    fields = {**_CONTACTS_FIELDS, "new_phone": "+853 6612 3456"}
    post = _case(fields, at_contacts.token, text_field, case)
    response = at_contacts.client.post("/activate/contacts", **post.for_client(at_contacts.token))
    assert response.status_code == 400, (case, response.status_code)
    body = response.get_data(as_text=True)
    assert 'name="new_email"' in body and 'name="csrf_token"' in body  # the choice again
    flow = at_contacts.flow()
    assert flow.step == "contacts" and flow.data is not None and flow.data.pending is None


def test_contacts_names_why_a_malformed_post_was_refused(at_contacts: StepClient) -> None:
    post = _case(_CONTACTS_FIELDS, at_contacts.token, "new_email", "file in a text field")
    response = at_contacts.client.post("/activate/contacts", **post.for_client(at_contacts.token))
    assert response.status_code == 400
    assert REFUSED in response.get_data(as_text=True)


def test_contacts_over_the_request_size_is_413(at_contacts: StepClient) -> None:
    post = oversized(_CONTACTS_FIELDS, at_contacts.token, "new_email")
    response = at_contacts.client.post("/activate/contacts", **post.for_client(at_contacts.token))
    assert response.status_code == 413


def test_the_well_formed_posts_still_pass(
    app: Flask, at_contacts: StepClient, browser: StepClient, student: StudentDetails
) -> None:
    """The same forms, sent as a browser sends them (urlencoded, and multipart without a
    file, as a form with enctype=multipart/form-data sends it), are not refused."""
    kept = at_contacts.client.post(
        "/activate/contacts",
        data={"csrf_token": at_contacts.token, **_CONTACTS_FIELDS},
        content_type="multipart/form-data",
    )
    # Kept contacts need no code (the FAQ): on to the password step.
    assert kept.status_code == 302, kept.get_data(as_text=True)[:400]
    assert kept.headers["Location"].endswith("/activate/password")
    identified = browser.submit("identify", _identify_fields(student))
    assert identified.status_code == 302


def test_an_unreadable_part_name_with_the_token_in_the_header_is_a_400(
    at_contacts: StepClient,
) -> None:
    """The CSRF check runs before ours and looks through the form's names for a token
    when the body has none: a part werkzeug names None must not reach it (was a 500)."""
    answer = at_contacts.client.post(
        "/activate/contacts",
        data=multipart([(b"\n", b"")]),
        content_type="multipart/form-data; boundary=b0undary",
        headers={"X-CSRFToken": at_contacts.token},
    )
    assert answer.status_code == 400
    assert b'class="site-header"' in answer.data
