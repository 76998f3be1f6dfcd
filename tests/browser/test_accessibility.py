"""Accessibility in Chromium at 360 px: every page state of the list in
tests/browser/page_states.py, in English, Traditional Chinese and Portuguese, each first
proven to be that page in that language, then checked by axe-core (from npm) with zero
violations; and the identify form used with the keyboard alone.

Screenshots of each state go to artifacts/browser/axe/<language>/.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
from flask import Flask
from playwright.sync_api import Browser, BrowserContext, Page, expect
from sqlalchemy import update

from provider.config import Settings
from provider.contact_input import mask_email
from provider.keycloak import ACCEPTED_POLICIES
from provider.services import Services
from provider.storage.models import Flow
from tests.browser.page_states import (
    BROWSER_LOCALE,
    FLOW,
    HELPDESK,
    KEYCLOAK_LOCALE,
    KEYCLOAK_PAGES,
    LANGUAGES,
    PageState,
    Walk,
    Where,
)
from tests.browser.sso import enter_password, enter_username
from tests.browser.test_activation_in_chromium import PASSWORD
from tests.conftest import KeycloakUnderTest, RealmUnderTest
from tests.support.broker import broker_request, pkce
from tests.support.date_boxes import fill_date_of_birth
from tests.support.flow_client import FlowClient
from tests.support.inbox import Inbox
from tests.support.keycloak_login import authorization_request, demo_callback
from tests.support.policies import accepted_now
from tests.support.realm_changes import RealmChanges
from tests.support.staff import STAFF_PASSWORD
from tests.support.students import active_student, enrol_student

VIEWPORT = {"width": 360, "height": 740}


@pytest.fixture
def shots(request: pytest.FixtureRequest, language: str, artifacts: Path) -> Path:
    """artifacts/browser/axe/<language>/<walk>/, emptied of an earlier run's pictures."""
    folder = artifacts / "axe" / language / request.node.originalname.removeprefix("test_")
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    return folder


WalkFor = Callable[[tuple[PageState, ...]], Walk]


@pytest.fixture
def walk_for(
    app: Flask,
    live_url: str,
    keycloak_server: KeycloakUnderTest,
    realm: RealmUnderTest,
    language: str,
    shots: Path,
) -> WalkFor:
    """A walk in the test's language through one list of states."""
    where = Where(live_url, keycloak_server.url, realm.name)
    return lambda states: Walk(app, where, language, states, shots)


def _context(browser: Browser, locale: str) -> BrowserContext:
    return browser.new_context(viewport=VIEWPORT, bypass_csp=True, locale=locale)


def _submit(page: Page) -> None:
    page.locator("main form[method=post] button[type=submit]").first.click()


def _identify(page: Page, user_id: str, code: str, born: date, last4: str) -> None:
    page.fill("#user_id", user_id)
    page.fill("#activation_code", code)
    fill_date_of_birth(page, born)
    page.fill("#id_last4", last4)
    _submit(page)


@pytest.mark.parametrize("language", LANGUAGES)
def test_flow_pages(
    browser: Browser,
    live_url: str,
    services: Services,
    inbox: Inbox,
    settings: Settings,
    app: Flask,
    language: str,
    walk_for: WalkFor,
) -> None:
    walk: Walk = walk_for(FLOW)
    who = enrol_student(services, "x", date_of_birth=date(2003, 3, 3), id_number="Z7654321")
    locked = enrol_student(services, "z")
    context = _context(browser, BROWSER_LOCALE[language])
    page = context.new_page()

    page.goto(f"{live_url}/language/{language}?next=/")
    walk.check(page, "start")
    page.locator("a.button--start").click()
    walk.check(page, "identify")
    _submit(page)
    walk.check(page, "identify-errors")
    _identify(page, who.user_id, who.code, who.date_of_birth, "0000")
    walk.check(page, "identify-failure")
    # Another student's ID, failed until it locks (the same answer, through the test
    # client), then once more here: the throttled page.
    flow = FlowClient(app.test_client())
    for _ in range(5):
        assert flow.identify(locked, id_last4="0000").status_code == 400
    _identify(page, locked.user_id, locked.code, locked.date_of_birth, locked.id_last4)
    walk.check(page, "identify-locked")

    _identify(page, who.user_id, who.code, who.date_of_birth, who.id_last4)
    walk.check(page, "policies")
    _submit(page)
    walk.check(page, "policies-errors")
    for box in page.locator("input[type=checkbox]").all():
        box.check()
    _submit(page)
    walk.check(page, "contacts-choose")
    # Any page may send this browser to the provider's authorize endpoint mid-flow: the
    # student is asked rather than losing the flow.
    page.goto(f"{live_url}/oidc/authorize?{urlencode(broker_request(settings, pkce()[1]))}")
    walk.check(page, "sign-in-elsewhere")
    page.locator("form[action$='/sign-in/keep'] button").click()
    page.click("button[value=send-email]")  # keep both; prove the email in one tap
    walk.check(page, "contacts-code-sent", contact=mask_email(who.email))
    code = inbox.email_code(who.email)
    page.fill("#code_email", f"{(int(code) + 1) % 10**6:06d}")
    page.click("button[value=continue]:visible")
    walk.check(page, "contacts-wrong-code")
    page.fill("#code_email", code)
    page.click("button[value=send-phone]")  # the email's code typed is checked on the way
    expect(page.locator(".confirmed")).to_have_count(1)
    walk.check(page, "contacts-confirmed")
    page.fill("#code_phone", inbox.sms_code(who.phone))
    page.click("button[value=continue]:visible")
    walk.check(page, "password")
    page.fill("#password", "short")
    page.fill("#confirm", "short")
    _submit(page)
    walk.check(page, "password-errors")
    page.fill("#password", PASSWORD)
    page.fill("#confirm", PASSWORD)
    _submit(page)
    walk.check(page, "done")

    # The browser's flow outlives its time on the server: a fresh start, and word of it.
    with services.sessions.begin() as db:
        db.execute(
            update(Flow)
            .where(Flow.user_id == who.user_id)
            .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )
    page.goto(f"{live_url}/activate/")
    walk.check(page, "flow-expired")
    page.goto(f"{live_url}/no-such-page")
    walk.check(page, "not-found")
    bad = {**broker_request(settings, pkce()[1]), "redirect_uri": "https://attacker.example/cb"}
    page.goto(f"{live_url}/oidc/authorize?{urlencode(bad)}")
    walk.check(page, "sign-in-link-invalid")
    context.close()
    walk.assert_complete_and_clean()


@pytest.fixture(scope="module")
def console_admin(module_staff: RealmChanges) -> str:
    return module_staff.add_staff("activation-admin").username


@pytest.fixture(scope="module")
def no_role(module_staff: RealmChanges) -> str:
    return module_staff.add_staff().username


@pytest.mark.parametrize("language", LANGUAGES)
def test_helpdesk_pages(
    browser: Browser,
    live_url: str,
    services: Services,
    console_admin: str,
    no_role: str,
    language: str,
    walk_for: WalkFor,
) -> None:
    walk: Walk = walk_for(HELPDESK)
    who = enrol_student(services, "d")
    context = _context(browser, BROWSER_LOCALE[language])
    page = context.new_page()
    page.goto(f"{live_url}/language/{language}?next=/helpdesk/")
    enter_username(page, console_admin)
    enter_password(page, STAFF_PASSWORD)
    walk.check(page, "helpdesk-home")
    page.goto(f"{live_url}/helpdesk/students/{who.user_id}")
    walk.check(page, "helpdesk-student", heading=who.user_id)
    page.locator("form[action$='/code'] button").click()
    walk.check(page, "helpdesk-confirm-code", user_id=who.user_id)
    page.locator("main form[action$='/code'] button[value=yes]").click()
    walk.check(page, "helpdesk-code-reissued", heading=who.user_id)
    active = active_student(services, "d", PASSWORD, accepted_now(services))
    page.goto(f"{live_url}/helpdesk/students/{active.user_id}")
    page.locator("main form[action$='/pending'] button").click()
    walk.check(page, "helpdesk-confirm-pending", user_id=active.user_id)
    page.locator("main form[action$='/pending'] button[value=yes]").click()
    walk.check(page, "helpdesk-confirm-pending-errors", user_id=active.user_id)
    page.locator("input[name=reason]").first.check()
    page.locator("main form[action$='/pending'] button[value=yes]").click()
    walk.check(page, "helpdesk-set-pending", heading=active.user_id)
    page.goto(f"{live_url}/helpdesk/students/zz{secrets.randbelow(10**5):05d}")
    walk.check(page, "helpdesk-not-found")
    page.goto(f"{live_url}/helpdesk/funnel")
    walk.check(page, "helpdesk-funnel")
    page.goto(f"{live_url}/helpdesk/recoveries")
    walk.check(page, "helpdesk-recoveries")
    page.goto(f"{live_url}/helpdesk/lockouts")
    walk.check(page, "helpdesk-lockouts")
    page.goto(f"{live_url}/helpdesk/undelivered")
    walk.check(page, "helpdesk-undelivered")
    page.locator("form[action$='/helpdesk/logout'] button").click()
    page.wait_for_url(f"{live_url}/helpdesk/signed-out")
    walk.check(page, "helpdesk-signed-out")
    page.goto(f"{live_url}/helpdesk/")
    enter_username(page, no_role)
    enter_password(page, STAFF_PASSWORD)
    walk.check(page, "helpdesk-no-role")
    context.close()
    walk.assert_complete_and_clean()


@pytest.mark.parametrize("language", LANGUAGES)
def test_keycloak_pages(
    browser: Browser,
    live_url: str,
    keycloak_server: KeycloakUnderTest,
    realm: RealmUnderTest,
    services: Services,
    language: str,
    walk_for: WalkFor,
) -> None:
    walk: Walk = walk_for(KEYCLOAK_PAGES)
    locale = KEYCLOAK_LOCALE[language]
    active = enrol_student(services, "k")
    account = services.keycloak.find_user(active.user_id)
    assert account is not None
    services.keycloak.activate(
        account.id, PASSWORD, attributes={ACCEPTED_POLICIES: accepted_now(services)}
    )
    pending = enrol_student(services, "p")
    params, _verifier = authorization_request("umpass-demo", demo_callback())
    sign_in = (
        f"{keycloak_server.url}/realms/{realm.name}/protocol/openid-connect/auth?"
        + urlencode({**params, "ui_locales": locale})
    )
    context = _context(browser, locale)
    page = context.new_page()
    page.goto(f"{live_url}/language/{language}?next=/")  # the service's own pages too

    page.goto(sign_in)
    walk.check(page, "keycloak-username")
    enter_username(page, active.user_id)
    walk.check(page, "keycloak-password")

    page.goto(sign_in)
    enter_username(page, pending.user_id)
    walk.check(page, "identify-from-sign-in")
    # The page back to sign-in moves on at once: held here (Keycloak's answer withheld)
    # while it is checked, then followed.
    broker = f"{keycloak_server.url}/realms/{realm.name}/broker/umpass-activation/endpoint**"
    page.route(broker, lambda route: route.fulfill(status=204))
    page.locator(".return-to-sign-in button").click()
    walk.check(page, "return-to-sign-in")
    page.unroute(broker)
    page.locator("main a.button").click()
    walk.check(page, "keycloak-pending-account")

    bad = {**params, "redirect_uri": "https://attacker.example/cb", "ui_locales": locale}
    page.goto(
        f"{keycloak_server.url}/realms/{realm.name}/protocol/openid-connect/auth?{urlencode(bad)}"
    )
    walk.check(page, "keycloak-error", parameter="redirect_uri")
    context.close()
    walk.assert_complete_and_clean()


def test_keyboard_only_reaches_and_submits_identify(browser: Browser, live_url: str) -> None:
    context = browser.new_context(viewport={"width": 360, "height": 740})
    page = context.new_page()
    page.goto(f"{live_url}/activate/")
    page.keyboard.press("Tab")  # the skip link comes first
    assert page.evaluate("document.activeElement.className") == "skip-link"
    order: list[str] = []
    for _ in range(20):  # past the language links
        page.keyboard.press("Tab")
        here = page.evaluate("document.activeElement.id || document.activeElement.type")
        if here != "user_id" and not order:
            continue
        if not order or order[-1] != here:
            order.append(here)
        if here == "submit":
            break
    assert order == [
        "user_id",
        "activation_code",
        "date_of_birth-day",
        "date_of_birth-month",
        "date_of_birth-year",
        "id_last4",
        "submit",
    ]
    page.keyboard.press("Enter")  # on the submit button with every field empty
    expect(page.locator(".error-summary")).to_be_visible()
    expect(page.locator(".error-summary")).to_be_focused()  # it takes focus (autofocus)
    context.close()
