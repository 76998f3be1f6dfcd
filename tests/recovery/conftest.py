"""Fixtures for the recovery flow's tests."""

from __future__ import annotations

import pytest
from flask import Flask
from keycloak import KeycloakAdmin

from provider.services import Services

# The integration tests' fixtures for Keycloak's record of writes, the fault proxy and the
# two service replicas, for the recovery's writes too.
from tests.integration.conftest import (  # noqa: F401
    keycloak_writes,
    proxy,
    replicas,
    two_replicas,
)
from tests.support.flow_at import DONE_PASSWORD
from tests.support.flow_client import StudentDetails
from tests.support.inbox import Inbox
from tests.support.recovery import RecoveryClient, activate_student
from tests.support.recovery_record import Locked, keycloak_id, lock_at_keycloak, open_session
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
def locked(active_student: StudentDetails, services: Services, admin: KeycloakAdmin) -> Locked:
    account = keycloak_id(admin, active_student.user_id)
    refresh = open_session(services, active_student.user_id, DONE_PASSWORD)
    lock_at_keycloak(services, active_student.user_id, account)
    return Locked(active_student, account, refresh)
