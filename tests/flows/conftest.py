"""Fixtures for the step tests: a flow put directly at the step under test
(tests/support/flow_at.py), so no test replays the steps before it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from provider.services import Services
from tests.support.flow_at import StepClient, put_flow_at
from tests.support.flow_client import StudentDetails
from tests.support.inbox import Inbox
from tests.support.students import enrol_student

FlowAt = Callable[..., StepClient]


@pytest.fixture
def student(services: Services) -> StudentDetails:
    """A freshly enrolled pending student (Keycloak account, code, proofing details)."""
    return enrol_student(services, "s")


@pytest.fixture
def flow_at(app: Flask, inbox: Inbox) -> FlowAt:
    """`flow_at("contacts", student, data={...})`: a browser whose flow is at that step."""

    def put(step: str, who: StudentDetails, data: dict[str, Any] | None = None) -> StepClient:
        return put_flow_at(app, inbox, step, who, data)

    return put


@pytest.fixture
def browser(app: Flask, inbox: Inbox) -> StepClient:
    """A browser with no flow yet (where identify starts), with a CSRF token in hand."""
    return StepClient(app, inbox)
