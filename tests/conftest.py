"""Shared fixtures: one real Keycloak and one real PostgreSQL per test run, one freshly
applied realm, the app.

The Keycloak is the project's own (scripts/devstack), started on free loopback ports
once per session and stopped at the end. Set UMPASS_TEST_KEYCLOAK_URL (with
KEYCLOAK_ADMIN_USER / KEYCLOAK_ADMIN_PASSWORD) to run against one you already have:
each run creates its own uniquely named realm and deletes it afterwards.

The integration and browser tests keep the service's data in PostgreSQL, what a
university deploys: a throwaway cluster (devstack.postgres) and a fresh database per
run. `UMPASS_TEST_DATABASE=sqlite` runs them on SQLite instead (the embedded default,
which the unit tests cover anyway).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from devstack import keycloak as kc_server
from devstack import postgres as pg_server
from flask import Flask
from flask.testing import FlaskClient
from keycloak import KeycloakAdmin, KeycloakOpenIDConnection
from playwright.sync_api import Playwright, sync_playwright

from keycloak_config.apply import ApplyOptions, apply_realm
from provider import create_app
from provider.config import Settings, load_settings
from provider.keycloak import ACTIVATION_STATE, STATE_PENDING, KeycloakGateway
from provider.services import Services
from provider.storage import migrate
from tests.support.inbox import Inbox, new_mobile
from tests.support.keycloak_login import DEMO_REDIRECT_BASE

METRICS_TOKEN = "metrics-" + "m" * 24


@dataclass(frozen=True)
class KeycloakUnderTest:
    url: str
    admin_user: str
    admin_password: str


@dataclass(frozen=True)
class RealmUnderTest:
    options: ApplyOptions
    first_apply: list[str]

    @property
    def name(self) -> str:
        return self.options.realm

    def env(self, server: KeycloakUnderTest, **extra: str) -> dict[str, str]:
        return {
            "UMPASS_BASE_URL": self.options.variables["ACTIVATION_ISSUER"].removesuffix("/oidc"),
            "UMPASS_BROKER_CLIENT_SECRET": self.options.variables["BROKER_CLIENT_SECRET"],
            "UMPASS_HELPDESK_CLIENT_SECRET": self.options.variables["HELPDESK_CLIENT_SECRET"],
            "UMPASS_KEYCLOAK_URL": server.url,
            "UMPASS_REALM": self.name,
            "UMPASS_KC_CLIENT_ID": "umpass-activation",
            "UMPASS_KC_CLIENT_SECRET": self.options.variables["ACTIVATION_CLIENT_SECRET"],
            "UMPASS_KC_PROVISIONER_SECRET": self.options.variables["PROVISIONER_CLIENT_SECRET"],
            "KEYCLOAK_ADMIN_USER": server.admin_user,
            "KEYCLOAK_ADMIN_PASSWORD": server.admin_password,
            "UMPASS_DEMO_BASE_URL": DEMO_REDIRECT_BASE,
            "UMPASS_TESTING": "1",
            "UMPASS_HMAC_KEY": "test-hmac-key-" + "k" * 32,
            # Every test client comes from 127.0.0.1; the per-address limit has its own test.
            "UMPASS_IDENTIFY_LIMIT": "10000 per minute",
            "UMPASS_LOG_FORMAT": "json",
            **extra,
        }


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    """One Playwright per run (its sync API allows only one at a time), for every browser
    the browser and topology tests launch."""
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="session")
def keycloak_server() -> Iterator[KeycloakUnderTest]:
    external = os.environ.get("UMPASS_TEST_KEYCLOAK_URL")
    if external:
        yield KeycloakUnderTest(
            external.rstrip("/"),
            os.environ["KEYCLOAK_ADMIN_USER"],
            os.environ["KEYCLOAK_ADMIN_PASSWORD"],
        )
        return
    admin_password = secrets.token_urlsafe(16)
    running = kc_server.start_throwaway(admin_password)
    try:
        yield KeycloakUnderTest(running.url, "admin", admin_password)
    finally:
        kc_server.stop("test")


@pytest.fixture(scope="session")
def service_port() -> int:
    """Where browser tests serve the app: fixed before the realm is applied, because the
    realm's identity provider points at it."""
    return kc_server.free_port()


@pytest.fixture(scope="session")
def realm(keycloak_server: KeycloakUnderTest, service_port: int) -> Iterator[RealmUnderTest]:
    name = f"umpass-t{secrets.token_hex(3)}"
    options = ApplyOptions.from_env(
        {
            "UMPASS_KEYCLOAK_URL": keycloak_server.url,
            "KEYCLOAK_ADMIN_USER": keycloak_server.admin_user,
            "KEYCLOAK_ADMIN_PASSWORD": keycloak_server.admin_password,
            "UMPASS_REALM": name,
            "UMPASS_KC_CLIENT_SECRET": secrets.token_urlsafe(24),
            "UMPASS_KC_PROVISIONER_SECRET": secrets.token_urlsafe(24),
            "UMPASS_DEMO_BASE_URL": DEMO_REDIRECT_BASE,
            "UMPASS_BASE_URL": f"http://127.0.0.1:{service_port}",
            "UMPASS_BROKER_CLIENT_SECRET": secrets.token_urlsafe(24),
            "UMPASS_HELPDESK_CLIENT_SECRET": secrets.token_urlsafe(24),
        },
        fast_hash=True,  # argon2 per password would dominate the suite's time
        theme=True,
        with_demo=True,
    )
    first = apply_realm(options).lines()
    yield RealmUnderTest(options, first)
    if os.environ.get("UMPASS_TEST_KEYCLOAK_URL"):
        master_admin(keycloak_server).delete_realm(name)


def master_admin(server: KeycloakUnderTest) -> KeycloakAdmin:
    return KeycloakAdmin(
        connection=KeycloakOpenIDConnection(
            server_url=server.url,
            username=server.admin_user,
            password=server.admin_password,
            realm_name="master",
            user_realm_name="master",
            client_id="admin-cli",
        )
    )


@pytest.fixture(scope="session")
def admin(keycloak_server: KeycloakUnderTest, realm: RealmUnderTest) -> KeycloakAdmin:
    """A privileged admin client on the test realm, for arranging and asserting."""
    kc = master_admin(keycloak_server)
    kc.change_current_realm(realm.name)
    return kc


@pytest.fixture(scope="session")
def inbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inbox]:
    """The real SMTP server and the SMS outbox the service delivers to."""
    box = Inbox(Path(tmp_path_factory.mktemp("sms")) / "outbox.jsonl")
    box.port = box.start()
    yield box
    box.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[pg_server.RunningPostgres]:
    """The run's PostgreSQL server (tests that restart it must leave it running)."""
    server = pg_server.start_throwaway()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh, empty database for the service under test."""
    if os.environ.get("UMPASS_TEST_DATABASE", "postgresql") == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'umpass.db'}"
    server: pg_server.RunningPostgres = request.getfixturevalue("postgres")
    return server.create_database(f"umpass_{secrets.token_hex(4)}")


@pytest.fixture(scope="session")
def service_env(
    keycloak_server: KeycloakUnderTest,
    realm: RealmUnderTest,
    tmp_path_factory: pytest.TempPathFactory,
    inbox: Inbox,
    database_url: str,
) -> dict[str, str]:
    """The service's environment, for the app in this process and for service processes
    a test starts (which also need `settings.secret_key` to read this app's cookies)."""
    key_dir = Path(tmp_path_factory.mktemp("keys"))
    return realm.env(
        keycloak_server,
        DATABASE_URL=database_url,
        UMPASS_SMTP_PORT=str(inbox.port),
        UMPASS_SMS_OUTBOX=str(inbox.outbox),
        UMPASS_SEND_LIMIT="10000 per hour",
        UMPASS_OIDC_KEY_FILE=str(key_dir / "oidc-signing-key.pem"),
        UMPASS_METRICS_TOKEN=METRICS_TOKEN,
    )


@pytest.fixture(scope="session")
def settings(service_env: dict[str, str]) -> Settings:
    return load_settings(service_env)


@pytest.fixture(scope="session")
def gateway(settings: Settings) -> KeycloakGateway:
    return KeycloakGateway(settings.keycloak)


@pytest.fixture
def pending_user(gateway: KeycloakGateway) -> str:
    """A fresh pending student with names, email and one unrelated attribute."""
    suffix = secrets.token_hex(3)
    return gateway.create_user(
        f"t{suffix}",
        email=f"t{suffix}@example.edu",
        first_name="Test",
        last_name="Student",
        attributes={ACTIVATION_STATE: [STATE_PENDING], "phone_number": [new_mobile()]},
    )


@pytest.fixture(scope="session")
def services(settings: Settings, gateway: KeycloakGateway) -> Services:
    """The assembled services over a database migrated from empty by Alembic."""
    svc = Services.assemble(settings, gateway=gateway)
    migrate.upgrade(svc.engine)
    return svc


@pytest.fixture(scope="session")
def app(settings: Settings, gateway: KeycloakGateway, services: Services) -> Flask:
    return create_app(settings, gateway=gateway)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
