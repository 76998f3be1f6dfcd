"""Browser-test fixtures: the service served for real on loopback, and Debian's Chromium."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from devstack.demo_app import create_demo_app
from flask import Flask
from playwright.sync_api import Browser, Playwright
from werkzeug.serving import make_server

from tests.conftest import DEMO_REDIRECT_BASE, KeycloakUnderTest, RealmUnderTest

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
def live_url(app: Flask, service_port: int) -> Iterator[str]:
    server = make_server("127.0.0.1", service_port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    # Playwright gives every launch a fresh, throw-away profile of its own.
    launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield launched
    launched.close()


@pytest.fixture(scope="session")
def demo_url(keycloak_server: KeycloakUnderTest, realm: RealmUnderTest) -> Iterator[str]:
    # The realm's demo client allows exactly this base (tests/conftest.py).
    port = int(DEMO_REDIRECT_BASE.split(":")[2].split("/")[0])
    app = create_demo_app(keycloak_server.url, realm.name)
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield DEMO_REDIRECT_BASE
    finally:
        server.shutdown()
