"""Each recovery page on its own (a flow put at the step): what it shows, what an invalid
submit answers, and that it changes nothing then."""

from __future__ import annotations

from flask import Flask

from provider.services import Services
from tests.support.flow_client import StudentDetails
from tests.support.inbox import Inbox
from tests.support.recovery import RecoveryClient, put_recovery_at


def test_the_start_page_asks_account_and_channel_and_reminds_new_students(
    browser: RecoveryClient,
) -> None:
    page = browser.get("start")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert 'name="account"' in body and 'value="email"' in body and 'value="phone"' in body
    assert "Step 1 of 5" in body
    assert 'id="not-activated"' in body and 'href="/activate/"' in body


def test_an_empty_start_is_refused_with_both_reasons_and_stores_nothing(
    browser: RecoveryClient, inbox: Inbox
) -> None:
    answer = browser.post("start", {"account": " ", "channel": ""})
    assert answer.status_code == 400
    body = answer.get_data(as_text=True)
    assert "Enter your user ID or email address" in body
    assert "Choose where to send the code" in body
    assert browser.flow_id is None


def test_choose_names_the_account_and_refuses_no_choice(
    app: Flask, inbox: Inbox, active_student: StudentDetails
) -> None:
    browser = put_recovery_at(app, inbox, "choose", active_student)
    page = browser.get("choose").get_data(as_text=True)
    assert active_student.user_id in page
    assert "Your account is not locked at the moment." in page
    refused = browser.post("choose", {})
    assert refused.status_code == 400
    assert "Choose what to do" in refused.get_data(as_text=True)
    assert browser.flow().step == "choose"


def test_the_pages_after_the_code_cannot_be_reached_without_it(
    app: Flask, inbox: Inbox, active_student: StudentDetails
) -> None:
    browser = put_recovery_at(app, inbox, "code", active_student)
    for step in ("choose", "new-password", "finished"):
        answer = browser.post(step, {"choice": "unlock"})
        assert answer.status_code == 302
        assert answer.headers["Location"].endswith("/recover/code")
    assert browser.flow().step == "code"


def test_unlock_ends_on_a_page_that_says_what_was_done_and_signs_no_one_in(
    app: Flask, inbox: Inbox, services: Services, active_student: StudentDetails
) -> None:
    browser = put_recovery_at(app, inbox, "choose", active_student)
    done = browser.post("choose", {"choice": "unlock"})
    assert done.headers["Location"].endswith("/recover/finished")
    page = browser.get("finished").get_data(as_text=True)
    assert "Your account is unlocked. Your password has not changed." in page
    assert active_student.user_id in page
    keycloak_id = browser.flow().data.keycloak_id  # type: ignore[union-attr]
    sessions = services.keycloak  # the service never opens a Keycloak session for them
    assert keycloak_id is not None and sessions.lockout_status(keycloak_id).get("disabled") is False


def test_the_date_of_birth_step_is_only_there_when_asked_for(
    browser: RecoveryClient,
) -> None:
    assert "birth-date" not in browser.get("start").get_data(as_text=True)
    assert browser.get("birth-date").headers["Location"].endswith("/recover/start")
