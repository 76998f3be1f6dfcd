"""The realm-health page in Chromium, as an IT admin meets it. It shows what the scheduled
`umpass realm-check` stored (the web service never holds the monitor's secret): green
after apply and a check; still green right after drift made by hand through the admin
API (nothing read the realm since), red with plain words once the check has run (each
drift line worded in the page's language), green again after `apply` and the next check;
red "not checked since" when the latest result is older than the limit, and "never
checked" when there is none. In English, Traditional Chinese and Portuguese, each state
proven (URL, `lang`, translated heading and text) and checked by axe-core with zero
violations, at 360 px without sideways scrolling, and readable with JavaScript off. A
help-desk member without `activation-admin` is refused it.

Screenshots: artifacts/browser/realm-health/<language>/.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from keycloak import KeycloakAdmin
from playwright.sync_api import Browser, Page, expect

from keycloak_config.apply import apply_realm
from tests.browser.page_states import BROWSER_LOCALE, LANGUAGES, REALM_HEALTH, Walk, Where
from tests.browser.page_states import service_text as text_in
from tests.browser.sso import enter_password, enter_username
from tests.conftest import KeycloakUnderTest, RealmUnderTest
from tests.support.realm_changes import RealmChanges
from tests.support.realm_check import RealmCheck
from tests.support.realm_drift import HAND_MADE, make_hand_drift
from tests.support.shots import Shots
from tests.support.staff import STAFF_PASSWORD

PHONE = {"width": 360, "height": 740}
# The drift make_hand_drift leaves: (item, its phrase, name).
HAND_MADE_DRIFT = (
    ("binding", "the flow bound as %(name)s", "browserFlow"),
    ("setting", "the realm setting %(name)s", "duplicateEmailsAllowed"),
    ("profile-attribute", "the user-profile attribute %(name)s", "activation_state"),
)


@pytest.fixture(scope="module")
def it_admin(module_staff: RealmChanges) -> str:
    return module_staff.add_staff("activation-admin").username


@pytest.fixture(scope="module")
def helpdesk_only(module_staff: RealmChanges) -> str:
    return module_staff.add_staff("activation-helpdesk").username


def _sign_in(page: Page, live_url: str, username: str, language: str = "en") -> None:
    page.goto(f"{live_url}/language/{language}?next=/helpdesk/realm-health")
    enter_username(page, username)
    enter_password(page, STAFF_PASSWORD)


def _fits(page: Page) -> None:
    width, window = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert (width, window) == (PHONE["width"], PHONE["width"])


@pytest.mark.parametrize("language", LANGUAGES)
def test_green_then_red_then_green_in_every_language(
    browser: Browser,
    app: Flask,
    live_url: str,
    keycloak_server: KeycloakUnderTest,
    realm: RealmUnderTest,
    admin: KeycloakAdmin,
    realm_changes: RealmChanges,
    it_admin: str,
    artifacts: Path,
    realm_check: RealmCheck,
    language: str,
) -> None:
    shots = artifacts / "realm-health" / language
    shots.mkdir(parents=True, exist_ok=True)
    where = Where(live_url, keycloak_server.url, realm.name)
    walk = Walk(app, where, language, REALM_HEALTH, shots)
    context = browser.new_context(viewport=PHONE, bypass_csp=True, locale=BROWSER_LOCALE[language])
    page = context.new_page()
    ok = str(text_in(app, language, "OK"))
    needs_repair = str(text_in(app, language, "Needs repair"))

    realm_check()
    _sign_in(page, live_url, it_admin, language)
    walk.check(page, "realm-health")
    statuses = page.locator("#checks .health-status")
    expect(statuses).to_have_count(10)
    expect(statuses).to_have_text([ok] * 10)
    expect(page.locator("#no-drift")).to_be_visible()
    _fits(page)

    make_hand_drift(admin, realm.name, realm_changes)
    page.reload()  # nothing has read the realm since: still the stored green
    expect(statuses).to_have_text([ok] * 10)
    realm_check()
    page.reload()
    walk.check(page, "realm-health-drift")
    for key in HAND_MADE:
        expect(page.locator(f"#check-{key} .health-status")).to_have_text(needs_repair)
        expect(page.locator(f"#check-{key} .health-found")).to_be_visible()
    expect(page.locator("#checks [data-ok=false]")).to_have_count(len(HAND_MADE))
    # Each drift line in the page's language: the action's sentence around the item.
    for item, phrase, name in HAND_MADE_DRIFT:
        line = page.locator(f'#drift li[data-action="change"][data-item="{item}"]')
        expect(line).to_have_count(1)
        worded = text_in(app, language, phrase, name=name)
        sentence = text_in(app, language, "Changed: apply would put back %(item)s.", item=worded)
        expect(line).to_contain_text(str(sentence))
        expect(line.locator("code").first).to_have_text(name)
    _fits(page)

    apply_realm(realm.options)
    realm_check()
    page.reload()
    expect(statuses).to_have_text([ok] * 10)
    expect(page.locator("#no-drift")).to_be_visible()
    page.screenshot(path=shots / "02b-realm-health-repaired.png", full_page=True)

    realm_check.age_all(timedelta(minutes=21))  # the timer stopped 21 minutes ago
    page.reload()
    walk.check(page, "realm-health-stale", command="umpass realm-check", minutes="20")
    expect(page.locator("#realm-stale")).to_be_visible()
    expect(page.locator("#realm-summary")).to_have_attribute("data-status", "stale")
    _fits(page)

    realm_check.forget_all()
    page.reload()
    walk.check(page, "realm-health-never", command="umpass realm-check")
    expect(page.locator("#checks")).to_have_count(0)
    _fits(page)
    realm_check()
    context.close()
    walk.assert_complete_and_clean()


def test_works_without_javascript_and_only_for_it_admins(
    browser: Browser,
    live_url: str,
    it_admin: str,
    helpdesk_only: str,
    shots_in: Callable[[str], Shots],
    realm_check: RealmCheck,
) -> None:
    realm_check()
    context = browser.new_context(viewport=PHONE, java_script_enabled=False)
    page = context.new_page()
    _sign_in(page, live_url, it_admin)
    expect(page).to_have_url(f"{live_url}/helpdesk/realm-health")
    expect(page.locator("h1")).to_have_text("Realm health")
    expect(page.locator("#checks .health-status").first).to_have_text("OK")
    expect(page.locator(".console-nav a", has_text="Realm health")).to_be_visible()
    context.close()

    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    _sign_in(page, live_url, helpdesk_only)
    page.wait_for_url(f"{live_url}/helpdesk/**")
    assert page.request.get(f"{live_url}/helpdesk/realm-health").status == 403
    page.goto(f"{live_url}/helpdesk/")
    expect(page.locator(".console-nav a", has_text="Realm health")).to_have_count(0)
    context.close()
