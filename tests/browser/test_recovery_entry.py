"""The way from Keycloak's sign-in pages to the service's recovery (/recover/), in Chromium
on a 360 px phone: "Forgot your password or locked out?" under the password field in
English, Traditional Chinese and Portuguese, and beside the error a student meets after
wrong passwords, once the realm's brute-force lock has tripped, and when starting again
while locked. Each page is run through axe-core.

Screenshots go to artifacts/browser/recovery-entry/.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlencode

import pytest
from keycloak import KeycloakAdmin
from playwright.sync_api import Browser, Locator, Page, expect

from provider.keycloak import ACCEPTED_POLICIES
from provider.services import Services
from tests.browser.page_states import (
    KEYCLOAK_LOCALE,
    KEYCLOAK_UPSTREAM,
    LANGUAGES,
    axe_violations,
    keycloak_text,
)
from tests.browser.sso import enter_password, enter_username
from tests.conftest import KeycloakUnderTest, RealmUnderTest
from tests.support.flow_client import StudentDetails
from tests.support.keycloak_login import authorization_request, demo_callback
from tests.support.policies import accepted_now
from tests.support.shots import Shots
from tests.support.students import enrol_student

PASSWORD = "harbour lantern quartz 2048"
WIDTH = 360
VIEWPORT = {"width": WIDTH, "height": 740}
LINK = "#umpass-recover-link"
# keycloak.v2's own markup on the password page (tests/browser/page_states.py).
PASSWORD_PAGE_UPSTREAM = KEYCLOAK_UPSTREAM["keycloak-password"]


class SignIn:
    """Keycloak's sign-in pages for one language, and the theme's texts in it."""

    def __init__(self, server: KeycloakUnderTest, realm: RealmUnderTest, language: str) -> None:
        self.server, self.realm = server, realm.name
        self.locale = KEYCLOAK_LOCALE[language]

    def url(self) -> str:
        params, _ = authorization_request("umpass-demo", demo_callback())
        query = urlencode({**params, "ui_locales": self.locale})
        return f"{self.server.url}/realms/{self.realm}/protocol/openid-connect/auth?{query}"

    def text(self, key: str) -> str:
        """The message in this language; never the English one unless this is English."""
        value = keycloak_text(self.server.url, self.realm, self.locale, key)
        if self.locale != "en":
            assert value != keycloak_text(self.server.url, self.realm, "en", key), key
        return value


def _active_student(services: Services) -> StudentDetails:
    who = enrol_student(services, "k")
    account = services.keycloak.find_user(who.user_id)
    assert account is not None
    services.keycloak.activate(
        account.id, PASSWORD, attributes={ACCEPTED_POLICIES: accepted_now(services)}
    )
    return who


def _top(locator: Locator) -> float:
    box = locator.bounding_box()
    assert box is not None
    return box["y"]


def _bottom(locator: Locator) -> float:
    box = locator.bounding_box()
    assert box is not None
    return box["y"] + box["height"]


def _assert_fits_the_phone(page: Page, link: Locator) -> None:
    """No sideways scrolling, and the whole link inside the screen's width."""
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH
    box = link.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= WIDTH


def _assert_link(page: Page, sign_in: SignIn, after: str) -> Locator:
    """The recovery link: visible, in this language, after `after` in document order, and
    to the service's /recover/ (beside its /activate/, from the same deployment)."""
    link = page.locator(LINK)
    expect(link).to_be_visible()
    expect(link).to_have_text(sign_in.text("umpassRecoverLink"))
    activate = page.locator("#umpass-activate-link").get_attribute("href") or ""
    assert activate.endswith("/activate/")
    assert link.get_attribute("href") == activate.removesuffix("/activate/") + "/recover/"
    follows = page.evaluate(
        """([field, link]) => Boolean(document.querySelector(field)
            .compareDocumentPosition(document.querySelector(link))
            & Node.DOCUMENT_POSITION_FOLLOWING)""",
        [after, LINK],
    )
    assert follows, f"the link comes before {after}"
    _assert_fits_the_phone(page, link)
    return link


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_password_page_leads_to_recovery(
    browser: Browser,
    keycloak_server: KeycloakUnderTest,
    realm: RealmUnderTest,
    services: Services,
    shots_in: Callable[[str], Shots],
    language: str,
) -> None:
    sign_in = SignIn(keycloak_server, realm, language)
    who = _active_student(services)
    context = browser.new_context(viewport=VIEWPORT, locale=sign_in.locale, bypass_csp=True)
    page = context.new_page()
    page.goto(sign_in.url())
    enter_username(page, who.user_id)
    expect(page.locator("h1")).to_have_text(sign_in.text("doLogIn"))
    expect(page.locator("html")).to_have_attribute("lang", sign_in.locale)

    link = _assert_link(page, sign_in, "#password")
    # Under the field, above the button: where Keycloak's own "Forgot Password?" would be.
    assert _bottom(page.locator("#password")) <= _top(link)
    assert _bottom(link) <= _top(page.locator("#kc-login"))
    shots_in("recovery-entry").take(page, f"password-{sign_in.locale}")
    assert [(v["id"], n) for v in axe_violations(page) for n in v["nodes"]] == (
        PASSWORD_PAGE_UPSTREAM
    )
    context.close()


def _wait_locked(admin: KeycloakAdmin, user_id: str) -> None:
    """Keycloak records a failure just after answering it: wait until the lock is on."""
    deadline = time.monotonic() + 30
    while not admin.get_bruteforce_detection_status(user_id)["disabled"]:
        assert time.monotonic() < deadline, "the brute-force lock never tripped"
        time.sleep(0.05)  # ok: a poll interval under the deadline above


def _assert_shown_together(error: Locator, link: Locator) -> None:
    """The error and the way out on the same screen, without scrolling."""
    expect(error).to_be_visible()
    expect(error).to_be_in_viewport()
    expect(link).to_be_in_viewport()


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_locked_out_student_sees_the_way_to_recovery_with_the_error(
    browser: Browser,
    keycloak_server: KeycloakUnderTest,
    realm: RealmUnderTest,
    admin: KeycloakAdmin,
    services: Services,
    shots_in: Callable[[str], Shots],
    language: str,
) -> None:
    sign_in = SignIn(keycloak_server, realm, language)
    shots = shots_in("recovery-entry")
    who = _active_student(services)
    user_id = admin.get_user_id(who.user_id)
    assert user_id is not None
    context = browser.new_context(viewport=VIEWPORT, locale=sign_in.locale, bypass_csp=True)
    page = context.new_page()
    try:
        page.goto(sign_in.url())
        enter_username(page, who.user_id)
        enter_password(page, "not my password 1")
        wrong = page.locator("#input-error-password")
        expect(wrong).to_have_text(sign_in.text("invalidPasswordMessage"))
        link = _assert_link(page, sign_in, "#password")
        _assert_shown_together(wrong, link)
        shots.take(page, f"wrong-password-{sign_in.locale}")
        violations = {"wrong-password": axe_violations(page)}

        failures = admin.get_realm(realm.name)["failureFactor"]
        for attempt in range(2, failures + 1):
            enter_password(page, f"not my password {attempt}")
        _wait_locked(admin, user_id)
        enter_password(page, PASSWORD)  # the right one: refused while the lock holds
        expect(page.locator("#password")).to_be_visible()
        locked = page.locator(".pf-v5-c-alert.pf-m-danger .kc-feedback-text")
        expect(locked).to_have_text(sign_in.text("accountTemporarilyDisabledMessage"))
        link = _assert_link(page, sign_in, "#password")
        _assert_shown_together(locked, link)
        shots.take(page, f"locked-{sign_in.locale}")
        violations["locked"] = axe_violations(page)

        # Starting again while locked: Keycloak refuses at the username step.
        page.goto(sign_in.url())
        enter_username(page, who.user_id)
        refused = page.locator("#input-error-username")
        expect(refused).to_have_text(sign_in.text("accountTemporarilyDisabledMessage"))
        link = _assert_link(page, sign_in, "#username")
        _assert_shown_together(refused, link)
        shots.take(page, f"locked-username-{sign_in.locale}")
        violations["locked-username"] = axe_violations(page)
    finally:
        context.close()
        admin.clear_bruteforce_attempts_for_user(user_id)
    found = {
        name: [(v["id"], n) for v in found for n in v["nodes"]]
        for name, found in violations.items()
    }
    assert found == {
        "wrong-password": PASSWORD_PAGE_UPSTREAM,
        "locked": PASSWORD_PAGE_UPSTREAM,
        "locked-username": [],
    }
