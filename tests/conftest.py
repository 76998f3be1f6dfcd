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
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from tests.support.flow_at import FlowAt, StepClient, put_flow_at
from tests.support.flow_client import StudentDetails
from tests.support.inbox import Inbox, new_mobile
from tests.support.keycloak_login import use_demo_base
from tests.support.listeners import loopback_listener, port_of, serving
from tests.support.realm_changes import RealmChanges, left_changed, shared_state
from tests.support.realm_check import RealmCheck
from tests.support.shots import Shots

METRICS_TOKEN = "metrics-" + "m" * 24
_BROWSER_ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "browser"


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

    @property
    def demo_base(self) -> str:
        """Where the realm's demo client may send browsers back to (its redirect URIs)."""
        return self.options.variables["DEMO_BASE_URL"]

    def monitor_env(self, service_env: dict[str, str]) -> dict[str, str]:
        """The environment of `umpass realm-check` on the timer's host: the service's, plus
        the monitor's secret (which the web service's environment never holds)."""
        return {
            **service_env,
            "UMPASS_KC_MONITOR_SECRET": self.options.variables["MONITOR_CLIENT_SECRET"],
            # As the realm was applied; the check plans with the same flags.
            "UMPASS_REALM_APPLY_FLAGS": "--theme --with-demo --fast-hash",
        }

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
            "UMPASS_DEMO_BASE_URL": self.demo_base,
            "UMPASS_POLICY_GATE_CACHE_SECONDS": self.options.variables["POLICY_GATE_CACHE_SECONDS"],
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
def artifacts() -> Path:
    """Where browser tests leave screenshots and axe reports (artifacts/browser/)."""
    _BROWSER_ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return _BROWSER_ARTIFACTS


@pytest.fixture
def shots_in(artifacts: Path) -> Callable[[str], Shots]:
    """Screenshots into a folder of artifacts/browser/ (`""`: that folder itself)."""

    def folder(name: str) -> Shots:
        path = artifacts / name
        path.mkdir(parents=True, exist_ok=True)
        return Shots(path)

    return folder


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
def service_listener() -> Iterator[socket.socket]:
    """Where browser tests serve the app (tests/browser/conftest.py): bound before the realm
    is applied, because the realm's identity provider points at its port."""
    with loopback_listener() as listener:
        yield listener


@pytest.fixture(scope="session")
def service_port(service_listener: socket.socket) -> int:
    return port_of(service_listener)


@pytest.fixture(scope="session")
def demo_listener() -> Iterator[socket.socket]:
    """Where the demo campus app is served (tests/browser/conftest.py): bound before the
    realm is applied, because the demo client's redirect URIs name its port."""
    with loopback_listener() as listener:
        yield listener


@pytest.fixture(scope="session")
def realm(
    keycloak_server: KeycloakUnderTest, service_port: int, demo_listener: socket.socket
) -> Iterator[RealmUnderTest]:
    name = f"umpass-t{secrets.token_hex(3)}"
    demo_base = f"http://127.0.0.1:{port_of(demo_listener)}/demo"
    options = ApplyOptions.from_env(
        {
            "UMPASS_KEYCLOAK_URL": keycloak_server.url,
            "KEYCLOAK_ADMIN_USER": keycloak_server.admin_user,
            "KEYCLOAK_ADMIN_PASSWORD": keycloak_server.admin_password,
            "UMPASS_REALM": name,
            "UMPASS_KC_CLIENT_SECRET": secrets.token_urlsafe(24),
            "UMPASS_KC_PROVISIONER_SECRET": secrets.token_urlsafe(24),
            "UMPASS_DEMO_BASE_URL": demo_base,
            "UMPASS_BASE_URL": f"http://127.0.0.1:{service_port}",
            "UMPASS_BROKER_CLIENT_SECRET": secrets.token_urlsafe(24),
            "UMPASS_HELPDESK_CLIENT_SECRET": secrets.token_urlsafe(24),
            "UMPASS_KC_MONITOR_SECRET": secrets.token_urlsafe(24),
            # Tests publish and withdraw versions one after another: each sign-in reads them.
            "UMPASS_POLICY_GATE_CACHE_SECONDS": "0",
        },
        fast_hash=True,  # argon2 per password would dominate the suite's time
        theme=True,
        with_demo=True,
    )
    first = apply_realm(options).lines()
    use_demo_base(demo_base)  # what tests.support.keycloak_login.sign_in returns to
    kc = master_admin(keycloak_server)
    kc.change_current_realm(name)
    applied = shared_state(kc, name)
    yield RealmUnderTest(options, first)
    # Every test undoes what it changed (the `realm_changes` fixture), passed or failed.
    left = left_changed(applied, shared_state(kc, name))
    if os.environ.get("UMPASS_TEST_KEYCLOAK_URL"):
        master_admin(keycloak_server).delete_realm(name)
    assert left == [], "tests left the shared realm changed:\n" + "\n".join(left)


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


@pytest.fixture
def realm_changes(admin: KeycloakAdmin, realm: RealmUnderTest) -> Iterator[RealmChanges]:
    """What a test changes in the session's realm, undone when it ends, passed or failed."""
    changes = RealmChanges(admin, realm.name)
    yield changes
    changes.undo_all()


@pytest.fixture(scope="module")
def module_staff(admin: KeycloakAdmin, realm: RealmUnderTest) -> Iterator[RealmChanges]:
    """The staff accounts the module's tests share, deleted when the module ends."""
    changes = RealmChanges(admin, realm.name)
    yield changes
    changes.undo_all()


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
def monitor_env(service_env: dict[str, str], realm: RealmUnderTest) -> dict[str, str]:
    return realm.monitor_env(service_env)


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


@pytest.fixture(scope="session")
def live_url(app: Flask, service_listener: socket.socket) -> Iterator[str]:
    """The app served for real (werkzeug's threaded server) on its bound port."""
    with serving(app, service_listener) as url:
        yield url


@pytest.fixture(scope="session")
def realm_check(services: Services, monitor_env: dict[str, str]) -> RealmCheck:
    """`umpass realm-check` in this process (its real code, on the service's database):
    read the realm through the monitor account and store the result."""
    return RealmCheck(services, monitor_env)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def flow_at(app: Flask, inbox: Inbox) -> FlowAt:
    """`flow_at("contacts", student, data={...})`: a browser whose flow is at that step
    (tests/support/flow_at.py), for a test about that step and not the journey to it."""

    def put(step: str, who: StudentDetails, data: dict[str, Any] | None = None) -> StepClient:
        return put_flow_at(app, inbox, step, who, data)

    return put
