"""Recovery in real Chromium against the real Keycloak: a student who forgot the password
resets it by email code from Keycloak's sign-in page and signs in with the new one; a
student locked out by wrong passwords unlocks by text-message code and signs in with the
old one. Then every recovery page in English, Traditional Chinese and Portuguese at 360 px
(each proven to be that page, caption and all, then axe-core: zero violations), the date
of birth page with the setting on, the start form by keyboard alone, and the email-code
walk without JavaScript.

Screenshots go to artifacts/browser/recovery/.
"""

from __future__ import annotations

import dataclasses
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from flask import Flask
from keycloak import KeycloakAdmin
from playwright.sync_api import Browser, BrowserContext, Page, expect

from provider import create_app
from provider.config import Settings
from provider.keycloak import KeycloakGateway
from provider.services import Services
from tests.browser.page_states import BROWSER_LOCALE, LANGUAGES
from tests.browser.recovery_pages import (
    DESKTOP,
    PHONE,
    RECOVER_LINK,
    PageCheck,
    assert_fits,
    pages,
)
from tests.browser.sso import enter_password, enter_username
from tests.conftest import KeycloakUnderTest, RealmUnderTest
from tests.support.date_boxes import fill_date_of_birth
from tests.support.flow_client import StudentDetails
from tests.support.inbox import Inbox
from tests.support.keycloak_login import sign_in
from tests.support.listeners import loopback_listener, serving
from tests.support.recovery import activate_student
from tests.support.shots import Shots
from tests.support.students import enrol_student

NEW_PASSWORD = "copper tide lantern 5521"
WEAK_PASSWORD = "short"


def _folder(artifacts: Path, *parts: str) -> Path:
    """artifacts/browser/recovery/<parts>/, emptied of an earlier run's pictures."""
    folder = artifacts.joinpath("recovery", *parts)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    return folder


def _active_student(app: Flask, inbox: Inbox, services: Services, prefix: str) -> StudentDetails:
    """An active student, email and mobile number verified (password DONE_PASSWORD)."""
    who = enrol_student(services, prefix)
    activate_student(app, inbox, who)
    return who


def _at_password_page(page: Page, demo_url: str, user_id: str) -> None:
    """The campus app's sign-in: Keycloak asks for the username, then the password."""
    page.goto(f"{demo_url}/")
    page.get_by_role("link", name="Sign in with UMPASS").click()
    enter_username(page, user_id)
    page.wait_for_selector("#password")


def _follow_recovery_link(page: Page, live_url: str) -> None:
    """From Keycloak's sign-in page to the service's /recover/: the theme's link, clicked."""
    link = page.locator(RECOVER_LINK)
    expect(link).to_be_visible()
    expect(link).to_have_text("Forgot your password or locked out?")
    href = link.get_attribute("href") or ""
    assert urlparse(href).path == "/recover/", href
    here = f"{live_url}/recover/"
    if href != here:
        # The link is where Keycloak was told the service is when it started
        # (UMPASS_RECOVERY_URL); this run's service has a port of its own: sent on there.
        page.route(href, lambda route: route.fulfill(status=302, headers={"Location": here}))
    link.click()
    page.wait_for_url(f"{here}start")
    expect(page.locator("h1")).to_have_text("Forgot your password or locked out?")


def _password_refused(page: Page, password: str) -> None:
    """Type `password` at Keycloak and see it refused on the page that comes back: under the
    field for a wrong password, in the page's alert once the account is locked."""
    page.fill("#password", password)
    with page.expect_navigation():  # the refusal on the old page is not this one's
        page.click("#kc-login")
    expect(page.locator("#input-error-password, .kc-feedback-text")).not_to_have_count(0)
    expect(page.locator("#password")).to_be_visible()
    expect(page.locator("#who")).to_have_count(0)


def _start(page: Page, account: str, channel: str) -> None:
    page.get_by_label("User ID or email address").fill(account)
    page.get_by_label(channel).check()
    page.get_by_role("button", name="Send me a code").click()
    expect(page.locator("h1")).to_have_text("Enter the code we sent")


def _enter_code(page: Page, code: str) -> None:
    page.get_by_label("6-digit code").fill(code)
    page.get_by_role("button", name="Continue", exact=True).click()
    expect(page.locator("h1")).to_have_text("Unlock or set a new password")


def test_forgotten_password_is_reset_by_email_code_from_the_sign_in_page(
    browser: Browser,
    demo_url: str,
    live_url: str,
    app: Flask,
    services: Services,
    inbox: Inbox,
    artifacts: Path,
) -> None:
    who = _active_student(app, inbox, services, "f")
    old_password = "orbit lantern velvet 1987"
    shots = Shots(_folder(artifacts, "forgot-password"))
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    _at_password_page(page, demo_url, who.user_id)
    shots.take(page, "keycloak-password")

    _follow_recovery_link(page, live_url)
    shots.take(page, "start")
    before = len(inbox.mails_to(who.email))
    _start(page, who.user_id, "By email")
    shots.take(page, "code")
    _enter_code(page, inbox.email_code(who.email, after=before))
    shots.take(page, "choose")
    page.get_by_label("Set a new password").check()
    page.get_by_role("button", name="Continue", exact=True).click()
    expect(page.locator("h1")).to_have_text("Choose a new password")
    shots.take(page, "new-password")
    page.get_by_label("New password").fill(NEW_PASSWORD)
    page.get_by_label("Type it again").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set my new password").click()
    expect(page.locator("h1")).to_have_text("All done")
    expect(page.get_by_text("Your password is changed")).to_be_visible()
    shots.take(page, "finished")
    # Not signed in for them: "Sign in now" leads to Keycloak's sign-in page.
    sign_in_now = page.get_by_role("link", name="Sign in now")
    assert "/realms/" in (sign_in_now.get_attribute("href") or "")
    context.close()

    # At Keycloak again: the old password is refused, the new one reaches the campus app.
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    _at_password_page(page, demo_url, who.user_id)
    _password_refused(page, old_password)
    shots.take(page, "keycloak-old-password-refused")
    enter_password(page, NEW_PASSWORD)
    expect(page.locator("#who")).to_contain_text(who.user_id)
    shots.take(page, "demo-signed-in-with-new-password")
    context.close()


def test_locked_student_unlocks_by_text_message_code_and_keeps_the_password(
    browser: Browser,
    demo_url: str,
    live_url: str,
    app: Flask,
    services: Services,
    inbox: Inbox,
    admin: KeycloakAdmin,
    realm: RealmUnderTest,
    artifacts: Path,
) -> None:
    who = _active_student(app, inbox, services, "k")
    password = "orbit lantern velvet 1987"
    account = services.keycloak.find_user(who.user_id)
    assert account is not None
    shots = Shots(_folder(artifacts, "locked"))
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()

    # Wrong passwords until the realm's brute-force detection locks the account; then
    # even the right one is refused.
    _at_password_page(page, demo_url, who.user_id)
    for attempt in range(admin.get_realm(realm.name)["failureFactor"]):
        _password_refused(page, f"not my password {attempt}")
    _password_refused(page, password)
    assert services.keycloak.lockout_status(account.id)["disabled"]
    expect(page.locator(RECOVER_LINK)).to_be_visible()
    shots.take(page, "keycloak-locked")
    context.close()

    # Later, from the start: Keycloak refuses the locked account at the username step, and
    # the way out is the link beside that error.
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    page.goto(f"{demo_url}/")
    page.get_by_role("link", name="Sign in with UMPASS").click()
    enter_username(page, who.user_id)
    expect(page.locator("#input-error-username")).to_be_visible()
    shots.take(page, "keycloak-locked-at-username")
    _follow_recovery_link(page, live_url)
    before = len(inbox.texts_to(who.phone))
    _start(page, who.user_id, "By text message")
    shots.take(page, "code-by-text")
    _enter_code(page, inbox.sms_code(who.phone, after=before))
    expect(
        page.get_by_text("Your account is locked after too many wrong passwords.")
    ).to_be_visible()
    shots.take(page, "choose-locked")
    page.get_by_label("Unlock my account and keep my password").check()
    page.get_by_role("button", name="Continue", exact=True).click()
    expect(page.locator("h1")).to_have_text("All done")
    expect(
        page.get_by_text("Your account is unlocked. Your password has not changed.")
    ).to_be_visible()
    shots.take(page, "finished-unlocked")
    assert not services.keycloak.lockout_status(account.id)["disabled"]
    context.close()

    # The old password signs in again.
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    _at_password_page(page, demo_url, who.user_id)
    enter_password(page, password)
    expect(page.locator("#who")).to_contain_text(who.user_id)
    shots.take(page, "demo-signed-in-with-old-password")
    context.close()


# -- every page, in each language ----------------------------------------------------------


def _axe_context(browser: Browser, language: str) -> BrowserContext:
    # axe is injected as a script, which the pages' CSP forbids (tests/browser/page_states.py).
    return browser.new_context(viewport=PHONE, bypass_csp=True, locale=BROWSER_LOCALE[language])


def _submit(page: Page, value: str | None = None) -> None:
    form = page.locator("main form[method=post]").first
    button = form.locator(f"button[value={value}]" if value else "button[type=submit]").first
    button.click()


@pytest.mark.parametrize("language", LANGUAGES)
def test_recovery_pages(
    browser: Browser,
    live_url: str,
    app: Flask,
    services: Services,
    inbox: Inbox,
    artifacts: Path,
    language: str,
) -> None:
    who = _active_student(app, inbox, services, "p")
    walk = PageCheck(
        app,
        live_url,
        language,
        pages(asks_birth_date=False),
        total=5,
        shots=_folder(artifacts, language),
    )
    context = _axe_context(browser, language)
    page = context.new_page()

    # A new password by email code, every error on the way.
    page.goto(f"{live_url}/language/{language}?next=/recover/")
    walk.check(page, "start")
    page.set_viewport_size(DESKTOP)
    assert_fits(page)
    page.screenshot(path=walk.shots / "desktop-start.png", full_page=True)
    page.set_viewport_size(PHONE)
    _submit(page)
    walk.check(page, "start-errors")
    page.fill("#account", who.user_id)
    page.check("#channel-0")  # by email
    before = len(inbox.mails_to(who.email))
    _submit(page)
    walk.check(page, "code-email")
    code = inbox.email_code(who.email, after=before)
    page.fill("#code", f"{(int(code) + 1) % 10**6:06d}")
    _submit(page, "verify")
    walk.check(page, "code-wrong")
    page.fill("#code", code)
    _submit(page, "verify")
    walk.check(page, "choose")
    _submit(page)
    walk.check(page, "choose-errors")
    page.check("#choice-1")  # a new password
    _submit(page)
    walk.check(page, "new-password")
    page.fill("#password", WEAK_PASSWORD)
    page.fill("#confirm", WEAK_PASSWORD)
    _submit(page)
    walk.check(page, "new-password-errors")
    page.fill("#password", NEW_PASSWORD)
    page.fill("#confirm", NEW_PASSWORD)
    _submit(page)
    walk.check(page, "finished-reset")

    # Again, by text message, to unlock only: "Start again" forgets the finished flow.
    page.locator("form.not-you button").click()
    walk.check(page, "start")
    page.fill("#account", who.user_id)
    page.check("#channel-1")  # by text message
    before = len(inbox.texts_to(who.phone))
    _submit(page)
    walk.check(page, "code-text")
    page.fill("#code", inbox.sms_code(who.phone, after=before))
    _submit(page, "verify")
    walk.check(page, "choose")
    page.check("#choice-0")  # unlock only
    _submit(page)
    walk.check(page, "finished-unlock")
    context.close()
    walk.assert_clean(
        [
            "start",
            "start-errors",
            "code-email",
            "code-wrong",
            "choose",
            "choose-errors",
            "new-password",
            "new-password-errors",
            "finished-reset",
            "start",
            "code-text",
            "choose",
            "finished-unlock",
        ]
    )


@pytest.fixture(scope="module")
def birth_date_service(
    settings: Settings, gateway: KeycloakGateway, live_url: str
) -> Iterator[tuple[Flask, str]]:
    """A second replica of the service (same database and realm) with the date of birth
    asked as a second proof; its own address, so its origin check passes."""
    listener: socket.socket = loopback_listener()
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    asking = dataclasses.replace(settings, recovery_asks_birth_date=True, base_url=base)
    app = create_app(asking, gateway=gateway)
    with serving(app, listener) as url:
        yield app, url


@pytest.mark.parametrize("language", LANGUAGES)
def test_recovery_pages_with_the_birth_date(
    browser: Browser,
    birth_date_service: tuple[Flask, str],
    app: Flask,
    services: Services,
    inbox: Inbox,
    artifacts: Path,
    language: str,
) -> None:
    asking, base = birth_date_service
    who = _active_student(app, inbox, services, "b")
    walk = PageCheck(
        asking,
        base,
        language,
        pages(asks_birth_date=True),
        total=6,
        shots=_folder(artifacts, "birth-date", language),
    )
    context = _axe_context(browser, language)
    page = context.new_page()
    page.goto(f"{base}/language/{language}?next=/recover/")
    walk.check(page, "start")
    page.fill("#account", who.user_id)
    page.check("#channel-0")
    before = len(inbox.mails_to(who.email))
    _submit(page)
    walk.check(page, "code-email")
    page.fill("#code", inbox.email_code(who.email, after=before))
    _submit(page, "verify")
    walk.check(page, "birth-date")
    _submit(page)
    walk.check(page, "birth-date-errors")
    fill_date_of_birth(page, who.date_of_birth)
    _submit(page)
    walk.check(page, "choose")
    context.close()
    walk.assert_clean(["start", "code-email", "birth-date", "birth-date-errors", "choose"])


# -- keyboard only, and without JavaScript -----------------------------------------------


def _focused(page: Page) -> str:
    return str(page.evaluate("document.activeElement.id || document.activeElement.type"))


def test_keyboard_only_fills_and_submits_the_start_form(
    browser: Browser, live_url: str, app: Flask, services: Services, inbox: Inbox
) -> None:
    who = _active_student(app, inbox, services, "y")
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    page.goto(f"{live_url}/recover/")
    page.keyboard.press("Tab")  # the skip link comes first
    assert page.evaluate("document.activeElement.className") == "skip-link"
    order: list[str] = []
    for _ in range(12):  # past the language links
        page.keyboard.press("Tab")
        here = _focused(page)
        if here != "account" and not order:
            continue
        if not order or order[-1] != here:
            order.append(here)
        if here == "submit":
            break
    # One stop for the channel: a radio group is entered once, its options by arrow keys.
    assert order == ["account", "channel-0", "submit"]

    page.keyboard.press("Enter")  # on the submit button with nothing filled in
    summary = page.locator(".error-summary")
    expect(summary).to_be_visible()
    expect(summary).to_be_focused()  # it takes focus (autofocus)
    page.keyboard.press("Tab")  # its first link: to the user ID field
    expect(summary.get_by_role("link").first).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#account")).to_be_focused()

    page.keyboard.type(who.user_id)
    page.keyboard.press("Tab")
    page.keyboard.press("ArrowDown")  # into the group and on to "By text message"
    expect(page.locator("#channel-1")).to_be_checked()
    page.keyboard.press("ArrowUp")
    expect(page.locator("#channel-0")).to_be_checked()  # by email
    page.keyboard.press("Tab")
    assert _focused(page) == "submit"
    before = len(inbox.mails_to(who.email))
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("Enter the code we sent")
    assert inbox.email_code(who.email, after=before)
    context.close()


def test_email_code_walk_without_javascript(
    browser: Browser,
    live_url: str,
    app: Flask,
    services: Services,
    inbox: Inbox,
    keycloak_server: KeycloakUnderTest,
    realm: RealmUnderTest,
    artifacts: Path,
) -> None:
    who = _active_student(app, inbox, services, "j")
    shots = Shots(_folder(artifacts, "no-javascript"))
    context = browser.new_context(viewport=PHONE, java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{live_url}/recover/")
    expect(page.locator("h1")).to_have_text("Forgot your password or locked out?")
    shots.take(page, "start")
    before = len(inbox.mails_to(who.email))
    _start(page, who.user_id, "By email")
    shots.take(page, "code")
    _enter_code(page, inbox.email_code(who.email, after=before))
    shots.take(page, "choose")
    page.get_by_label("Set a new password").check()
    page.get_by_role("button", name="Continue", exact=True).click()
    expect(page.locator("h1")).to_have_text("Choose a new password")
    expect(page.locator("#strength-meter")).to_be_hidden()  # the meter needs JavaScript
    shots.take(page, "new-password")
    page.get_by_label("New password").fill(NEW_PASSWORD)
    page.get_by_label("Type it again").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set my new password").click()
    expect(page.locator("h1")).to_have_text("All done")
    expect(page.get_by_text("Your password is changed")).to_be_visible()
    shots.take(page, "finished")
    assert re.search(r"/recover/finished$", page.url)
    context.close()
    assert sign_in(keycloak_server.url, realm.name, who.user_id, NEW_PASSWORD).ok
