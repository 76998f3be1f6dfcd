"""Fixtures the integration tests share beyond tests/conftest.py."""

import dataclasses
from collections.abc import Iterator

import pytest
from flask import Flask
from keycloak import KeycloakAdmin

from provider.config import Settings
from provider.keycloak import KeycloakGateway
from provider.services import Services
from provider.services import services as app_services
from tests.conftest import KeycloakUnderTest, RealmUnderTest, master_admin
from tests.support.admin_events import KeycloakWrites, recording
from tests.support.fault_proxy import FaultProxy
from tests.support.ldap_server import slapd_server  # noqa: F401
from tests.support.replicas import Replica, start_replica


@pytest.fixture(scope="module")
def kc(keycloak_server: KeycloakUnderTest) -> KeycloakAdmin:
    """A master-realm admin, for tests that build and delete realms of their own."""
    return master_admin(keycloak_server)


@pytest.fixture(scope="session")
def replicas(
    service_env: dict[str, str],
    settings: Settings,
    services: Services,  # the database is migrated before they start
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Replica, Replica]]:
    """Two service processes under gunicorn on the run's database and realm, as two
    replicas behind one address (tests/support/service_process.py for their hooks)."""
    workdir = tmp_path_factory.mktemp("replicas")
    env = {**service_env, "UMPASS_SECRET_KEY": settings.secret_key}
    started = [start_replica(n, env, workdir, threads=12) for n in ("replica-a", "replica-b")]
    try:
        for replica in started:
            replica.wait_ready()
        yield started[0], started[1]
    finally:
        for replica in started:
            replica.stop()


@pytest.fixture
def two_replicas(replicas: tuple[Replica, Replica]) -> Iterator[tuple[Replica, Replica]]:
    """The replicas, with every crash point and hook a test set removed afterwards."""
    try:
        yield replicas
    finally:
        for replica in replicas:
            replica.reset()


@pytest.fixture(scope="module")
def keycloak_writes(admin: KeycloakAdmin, realm: RealmUnderTest) -> Iterator[KeycloakWrites]:
    """Keycloak's own record of every user write (admin events), on for the module."""
    with recording(admin, realm.name) as writes:
        yield writes


@pytest.fixture
def proxy(app: Flask, services: Services, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """From here on the app reaches Keycloak through the fault proxy, with a gateway of its
    own: its password-policy cache starts empty."""
    settings = services.settings.keycloak
    running = FaultProxy(settings.url)
    gateway = KeycloakGateway(dataclasses.replace(settings, url=running.url))
    monkeypatch.setattr(app_services(app), "keycloak", gateway)
    yield running
    running.close()
