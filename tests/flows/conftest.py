"""Fixtures for the step tests; `flow_at` (a flow put directly at the step under test, so
no test replays the steps before it) is in tests/conftest.py, shared with the integration
tests."""

from __future__ import annotations

import pytest
from flask import Flask

from provider.services import Services
from tests.support.flow_at import StepClient
from tests.support.flow_client import StudentDetails
from tests.support.inbox import Inbox
from tests.support.students import enrol_student


@pytest.fixture
def student(services: Services) -> StudentDetails:
    """A freshly enrolled pending student (Keycloak account, code, proofing details)."""
    return enrol_student(services, "s")


@pytest.fixture
def browser(app: Flask, inbox: Inbox) -> StepClient:
    """A browser with no flow yet (where identify starts), with a CSRF token in hand."""
    return StepClient(app, inbox)
