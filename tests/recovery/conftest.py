"""Fixtures for the recovery flow's tests."""

from __future__ import annotations

import pytest
from flask import Flask

from provider.services import Services
from tests.support import recovery_accounts as accounts
from tests.support.flow_client import StudentDetails
from tests.support.inbox import Inbox
from tests.support.recovery import RecoveryClient, activate_student
from tests.support.recovery_accounts import Typed
from tests.support.students import enrol_student


@pytest.fixture
def active_student(app: Flask, inbox: Inbox, services: Services) -> StudentDetails:
    """An active student with a verified email and mobile number (password DONE_PASSWORD)."""
    who = enrol_student(services, "r")
    activate_student(app, inbox, who)
    return who


@pytest.fixture
def browser(app: Flask, inbox: Inbox) -> RecoveryClient:
    return RecoveryClient(app, inbox)


@pytest.fixture
def recoverable(app: Flask, inbox: Inbox, services: Services) -> Typed:
    """A fresh active student with both contacts verified, as a start can name it."""
    return accounts.active(app, inbox, services)


@pytest.fixture
def generous_budgets(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-account budgets with room for every request of the test (a fresh counter: the
    limit string is part of its key), for a test about something else than them."""
    monkeypatch.setitem(app.config, "UMPASS_RECOVERY_ACCOUNT_LIMIT", "1000 per hour")
    monkeypatch.setitem(app.config, "UMPASS_RECOVERY_CONTACT_LIMIT", "1000 per hour")
