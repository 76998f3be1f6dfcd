"""The demo downstream app signs an activated student in through the realm and shows
their activation_state, in real Chromium against the real Keycloak."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from playwright.sync_api import Browser, expect

from provider.keycloak import ACCEPTED_POLICIES
from provider.services import Services
from tests.browser.sso import enter_password, enter_username
from tests.browser.test_activation_in_chromium import PASSWORD
from tests.support.policies import accepted_now
from tests.support.shots import Shots
from tests.support.students import enrol_student


def test_activated_student_signs_in_to_the_demo_app(
    browser: Browser, demo_url: str, services: Services, shots_in: Callable[[str], Shots]
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
    assert services.keycloak.activate(
        user.id, PASSWORD, attributes={ACCEPTED_POLICIES: accepted_now(services)}
    )
    shots = shots_in("demo")
    context = browser.new_context(viewport={"width": 360, "height": 740})
    page = context.new_page()
    page.goto(f"{demo_url}/")
    shots.take(page, "demo-signed-out")
    page.get_by_role("link", name="Sign in with UMPASS").click()
    page.wait_for_selector("#username")
    expect(page.locator("#umpass-activate-link")).to_be_visible()  # the theme's way in
    shots.take(page, "keycloak-sign-in")
    enter_username(page, user_id)
    enter_password(page, PASSWORD)
    expect(page.locator("#who")).to_contain_text(user_id)
    expect(page.locator("#state")).to_have_text("active")
    shots.take(page, "demo-signed-in")
    context.close()
