"""Fixtures for the recovery flow's tests."""

from __future__ import annotations

import pytest
from flask import Flask

from provider.services import Services
from tests.support.flow_client import StudentDetails
from tests.support.inbox import Inbox
from tests.support.recovery import RecoveryClient, activate_student
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
