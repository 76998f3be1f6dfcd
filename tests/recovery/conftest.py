"""Fixtures for the recovery flow's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from keycloak import KeycloakAdmin

from provider.config import Settings
from provider.services import Services

# The integration tests' fixtures for Keycloak's record of writes and the fault proxy, for
# the recovery's writes too.
from tests.integration.conftest import keycloak_writes, proxy  # noqa: F401
from tests.support import recovery_accounts as accounts
from tests.support.fault_proxy import FaultProxy
from tests.support.flow_at import DONE_PASSWORD
from tests.support.flow_client import StudentDetails
from tests.support.inbox import Inbox
from tests.support.recovery import RecoveryClient, activate_student
from tests.support.recovery_accounts import Typed
from tests.support.recovery_at import CountedReplicas
from tests.support.recovery_record import Locked, keycloak_id, lock_at_keycloak, open_session
from tests.support.replicas import start_replica
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


@pytest.fixture
def locked(active_student: StudentDetails, services: Services, admin: KeycloakAdmin) -> Locked:
    account = keycloak_id(admin, active_student.user_id)
    refresh = open_session(services, active_student.user_id, DONE_PASSWORD)
    lock_at_keycloak(services, active_student.user_id, account)
    return Locked(active_student, account, refresh)


@pytest.fixture(scope="session")
def counted(
    service_env: dict[str, str],
    settings: Settings,
    services: Services,  # the database is migrated before they start
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CountedReplicas]:
    """Two processes under gunicorn on the run's database and realm, as two replicas behind
    one address, reaching Keycloak through a proxy that counts every request: a write that
    changes nothing (a second lift of a lock already lifted) leaves no admin event, but it
    cannot pass unseen here."""
    keycloak = FaultProxy(settings.keycloak.url)
    workdir = tmp_path_factory.mktemp("counted-replicas")
    env = {
        **service_env,
        "UMPASS_SECRET_KEY": settings.secret_key,
        "UMPASS_KEYCLOAK_URL": keycloak.url,
    }
    started = [start_replica(n, env, workdir, threads=12) for n in ("counted-a", "counted-b")]
    try:
        for replica in started:
            replica.wait_ready()
        yield CountedReplicas((started[0], started[1]), keycloak)
    finally:
        for replica in started:
            replica.stop()
        keycloak.close()


@pytest.fixture
def counted_replicas(counted: CountedReplicas) -> Iterator[CountedReplicas]:
    """The counted replicas, with every crash point a test set removed afterwards."""
    try:
        yield counted
    finally:
        for replica in counted.replicas:
            replica.reset()
