"""The demo downstream app signs an activated student in through the realm and shows
their activation_state, in real Chromium against the real Keycloak."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import date

import pytest
from devstack.demo_app import create_demo_app
from playwright.sync_api import Browser, expect
from werkzeug.serving import make_server

from provider.keycloak import ACCEPTED_POLICIES
from provider.services import Services
from tests.browser.test_activation_in_chromium import ARTIFACTS, PASSWORD, Shots
from tests.conftest import DEMO_REDIRECT_BASE, KeycloakUnderTest, RealmUnderTest
from tests.support.students import enrol_student


@pytest.fixture(scope="module")
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


def test_activated_student_signs_in_to_the_demo_app(
    browser: Browser, demo_url: str, services: Services
) -> None:
    student = enrol_student(
        services,
        "d",
        first_name="Demo",
        last_name="Student",
        date_of_birth=date(2005, 5, 5),
        id_number="A7654321",
    )
    user_id = student.user_id
    user = services.keycloak.find_user(user_id)
    assert user is not None
    assert services.keycloak.activate(user.id, PASSWORD, attributes={ACCEPTED_POLICIES: []})
    shots = Shots(ARTIFACTS / "demo")
    context = browser.new_context(viewport={"width": 360, "height": 740})
    page = context.new_page()
    page.goto(f"{demo_url}/")
    shots.take(page, "demo-signed-out")
    page.get_by_role("link", name="Sign in with UMPASS").click()
    page.wait_for_selector("#username")
    expect(page.locator("#umpass-activate-link")).to_be_visible()  # the theme's way in
    shots.take(page, "keycloak-sign-in")
    page.fill("#username", user_id)
    page.fill("#password", PASSWORD)
    page.click("#kc-login")
    expect(page.locator("#who")).to_contain_text(user_id)
    expect(page.locator("#state")).to_have_text("active")
    shots.take(page, "demo-signed-in")
    context.close()
