"""The optional second proof (UMPASS_RECOVERY_ASKS_BIRTH_DATE): after the code, the date of
birth. The right date goes on; a wrong one counts on the account's recovery counter,
with wrong codes, in every flow: five wrong proofs in a row lock recovery (429 and
Retry-After), and proving the code in a new flow does not wipe out wrong dates."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from flask import Flask

from provider import create_app
from provider.config import Settings
from provider.date_input import form_fields
from provider.guards.lockout import BASE_LOCK
from provider.keycloak import KeycloakGateway
from provider.services import Services
from tests.support import recovery_accounts as accounts
from tests.support.inbox import Inbox
from tests.support.recovery import RecoveryClient
from tests.support.recovery_accounts import Typed

BIRTH_DATE = date(2006, 2, 28)  # what tests.support.students enrols
NOT_IT = "That date of birth does not match our records."
LOCKED = "Too many wrong tries for this account."


@pytest.fixture(scope="module")
def asking_app(settings: Settings, gateway: KeycloakGateway, services: Services) -> Iterator[Flask]:
    """The service of a university that asks for the date of birth too (same realm and
    database as the run's app)."""
    yield create_app(dataclasses.replace(settings, recovery_asks_birth_date=True), gateway=gateway)


def _at_birth_date(
    app: Flask, inbox: Inbox, services: Services, account: Typed, typed: str, wrong_codes: int = 0
) -> RecoveryClient:
    """A browser whose flow proved the code (after some wrong ones) for `account`, typed
    as `typed`: now at the date of birth."""
    before = len(inbox.mails_to(account.email))
    accounts.age_sends(services, account.user_id, timedelta(seconds=61))
    browser = RecoveryClient(app, inbox)
    assert browser.start(typed, "email").headers["Location"].endswith("/recover/code")
    code = inbox.email_code(account.email, after=before)
    for _ in range(wrong_codes):
        assert browser.code(f"{(int(code) + 1) % 10**6:06d}").status_code == 400
    proven = browser.code(code)
    assert proven.status_code == 302, proven.get_data(as_text=True)
    assert proven.headers["Location"].endswith("/recover/birth-date")
    return browser


def _date(browser: RecoveryClient, day: date) -> tuple[int, str, str | None]:
    answer = browser.post("birth-date", form_fields(day))
    return answer.status_code, answer.get_data(as_text=True), answer.headers.get("Location")


def test_the_right_date_of_birth_goes_on(
    asking_app: Flask, inbox: Inbox, services: Services, recoverable: Typed
) -> None:
    browser = _at_birth_date(asking_app, inbox, services, recoverable, recoverable.user_id)
    page = browser.get("birth-date")
    assert page.status_code == 200
    assert "Step 3 of 6" in page.get_data(as_text=True)
    status, body, _ = _date(browser, date(2006, 3, 1))
    assert (status, NOT_IT in body) == (400, True)
    status, _, location = _date(browser, BIRTH_DATE)
    assert status == 302 and location and location.endswith("/recover/choose")
    assert ("recovery.birth_date_failed", {}) in accounts.audit_of(services, recoverable.user_id)


def test_wrong_dates_and_wrong_codes_are_one_counter(
    asking_app: Flask, inbox: Inbox, services: Services, recoverable: Typed
) -> None:
    """Three wrong codes, the right one, two wrong dates: five wrong proofs in a row."""
    browser = _at_birth_date(
        asking_app, inbox, services, recoverable, recoverable.user_id, wrong_codes=3
    )
    status, body, _ = _date(browser, date(2006, 3, 1))
    assert (status, NOT_IT in body) == (400, True)
    status, body, _ = _date(browser, date(2006, 3, 2))  # the fifth: recovery locks
    assert (status, NOT_IT in body) == (400, True)
    answer = browser.post("birth-date", form_fields(BIRTH_DATE))
    assert answer.status_code == 429 and LOCKED in answer.get_data(as_text=True)
    assert 0 < int(answer.headers["Retry-After"]) <= BASE_LOCK.total_seconds()


def test_proving_the_code_again_in_a_new_flow_does_not_wipe_out_wrong_dates(
    asking_app: Flask, inbox: Inbox, services: Services, recoverable: Typed
) -> None:
    """Whoever holds the contact cannot guess the date of birth forever, four at a time,
    by opening a new flow for each fresh code."""
    first = _at_birth_date(asking_app, inbox, services, recoverable, recoverable.user_id)
    for day in range(1, 5):
        status, body, _ = _date(first, date(2006, 3, day))
        assert (status, NOT_IT in body) == (400, True)
    second = _at_birth_date(asking_app, inbox, services, recoverable, recoverable.email)
    status, body, _ = _date(second, date(2006, 3, 5))
    assert (status, NOT_IT in body) == (400, True)
    answer = second.post("birth-date", form_fields(BIRTH_DATE))
    assert answer.status_code == 429 and LOCKED in answer.get_data(as_text=True)
    actions = [action for action, _ in accounts.audit_of(services, recoverable.user_id)]
    assert actions.count("recovery.birth_date_failed") == 5
    assert actions.count("recovery.locked") == 1
