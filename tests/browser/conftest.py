"""Browser-test fixtures: Debian's Chromium and the demo campus app (the service itself is
served by tests/conftest.py's `live_url`)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from devstack.demo_app import create_demo_app
from playwright.sync_api import Browser, Playwright

from tests.conftest import KeycloakUnderTest, RealmUnderTest
from tests.support.listeners import serving

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    # Playwright gives every launch a fresh, throw-away profile of its own.
    launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield launched
    launched.close()


@pytest.fixture(scope="session")
def demo_url(
    keycloak_server: KeycloakUnderTest, realm: RealmUnderTest, demo_listener: socket.socket
) -> Iterator[str]:
    # Served on the port the realm's demo client was applied with (tests/conftest.py).
    with serving(create_demo_app(keycloak_server.url, realm.name), demo_listener):
        yield realm.demo_base
