"""Every page a student or the help desk meets fits a 360 x 740 phone: no sideways scrolling
(`document.documentElement.scrollWidth <= window.innerWidth`), in English, Traditional
Chinese and Portuguese.

Keycloak's pages (the `umpass` login theme): username, password, wrong password, locked
(at the password and at the username step), the pending account turned back (the umpass
flows' deny page), the broker's refusal (the IdP-error page), a refused reset and an
invalid sign-in request. The service's: start, every activation step with its errors,
every recovery step, the error and not-found pages. The help desk's: home, a student with
a full timeline, the new-code question and page, lockouts, funnel, recoveries, realm health,
signed out, no role.

Each page is reached the quickest way (a flow put at its step, the help desk signed in
once per language), checked to be in the language walked (`lang`), measured, and
photographed to artifacts/browser/fits-phone/<language>/. Every page is measured before the
test fails, so one run names every page that overflows.
"""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
from flask import Flask
from keycloak import KeycloakAdmin
from playwright.sync_api import Browser, BrowserContext, Page, expect

from provider.config import Settings
from provider.flows.engine import FLOW_COOKIE
from provider.i18n import HTML_LANG, LANGUAGE_COOKIE
from provider.keycloak import ACCEPTED_POLICIES
from provider.oidc import handoff
from provider.oidc.server import Subject
from provider.recovery.flow import COOKIE as RECOVERY_COOKIE
from provider.services import Services
from tests.browser.page_states import KEYCLOAK_LOCALE, LANGUAGES, keycloak_text
from tests.browser.sso import enter_password, enter_username
from tests.browser.test_activation_in_chromium import PASSWORD
from tests.conftest import KeycloakUnderTest, RealmUnderTest
from tests.support.broker import broker_request, pkce
from tests.support.flow_at import FlowAt
from tests.support.flow_client import FlowClient, StudentDetails
from tests.support.inbox import Inbox
from tests.support.keycloak_login import authorization_request, demo_callback
from tests.support.policies import accepted_now
from tests.support.realm_changes import RealmChanges
from tests.support.realm_check import RealmCheck
from tests.support.recovery import activate_student, put_recovery_at
from tests.support.staff import STAFF_PASSWORD
from tests.support.students import enrol_student

PHONE = {"width": 360, "height": 740}
WIDTHS = "[document.documentElement.scrollWidth, window.innerWidth]"


class Phone:
    """One language's pages on a 360 px phone: each measured and photographed."""

    def __init__(self, page: Page, language: str, shots: Path) -> None:
        self.page, self.language, self.shots = page, language, shots
        self.widths: dict[str, int] = {}

    def measure(self, name: str, *, keycloak: bool = False, says: str = "") -> None:
        """`says`: a text that tells this page from the others (what they all share, the
        language, is checked anyway)."""
        page = self.page
        expect(page.locator("h1")).to_be_visible()
        if says:
            expect(page.locator("body")).to_contain_text(says)
        lang = KEYCLOAK_LOCALE[self.language] if keycloak else HTML_LANG[self.language]
        expect(page.locator("html")).to_have_attribute("lang", lang)
        width, window = page.evaluate(WIDTHS)
        assert window == PHONE["width"]
        assert name not in self.widths, f"{name} measured twice"
        self.widths[name] = width
        page.screenshot(path=self.shots / f"{len(self.widths):02d}-{name}.png", full_page=True)

    def assert_all_fit(self, expected: list[str]) -> None:
        assert list(self.widths) == expected, "pages left unmeasured"
        wide = {name: width for name, width in self.widths.items() if width > PHONE["width"]}
        assert wide == {}, f"wider than {PHONE['width']} px in {self.language}: {wide}"


@pytest.fixture
def phone_for(
    browser: Browser, live_url: str, artifacts: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[[str], Phone]]:
    """A phone (a fresh browser context) whose service pages are in `language`."""
    contexts: list[BrowserContext] = []

    def phone(language: str) -> Phone:
        area = request.node.originalname.removeprefix("test_")
        shots = artifacts / "fits-phone" / language / area
        shots.mkdir(parents=True, exist_ok=True)
        for old in shots.glob("*.png"):
            old.unlink()
        locale = KEYCLOAK_LOCALE[language]
        context = browser.new_context(viewport=PHONE, locale=locale)
        context.add_cookies([{"name": LANGUAGE_COOKIE, "value": language, "url": live_url}])
        contexts.append(context)
        return Phone(context.new_page(), language, shots)

    yield phone
    for context in contexts:
        context.close()


def _submit(page: Page) -> None:
    page.locator("main form[method=post] button[type=submit]").first.click()


def _put_flow(page: Page, live_url: str, cookie: str, path: str, flow_id: str | None) -> None:
    assert flow_id is not None
    host = urlparse(live_url).hostname
    page.context.add_cookies([{"name": cookie, "value": flow_id, "domain": host, "path": path}])


SERVICE_PAGES = [
    "start",
    "identify",
    "identify-errors",
    "policies",
    "policies-errors",
    "contacts",
    "password",
    "password-errors",
    "done",
    "sign-in-elsewhere",
    "not-found",
    "sign-in-link-invalid",
    "recover-start",
    "recover-start-errors",
    "recover-code",
    "recover-choose",
    "recover-choose-errors",
    "recover-new-password",
    "recover-new-password-errors",
]


@pytest.mark.parametrize("language", LANGUAGES)
def test_service_pages(
    phone_for: Callable[[str], Phone],
    live_url: str,
    app: Flask,
    services: Services,
    settings: Settings,
    inbox: Inbox,
    flow_at: FlowAt,
    language: str,
) -> None:
    phone = phone_for(language)
    page = phone.page
    page.goto(f"{live_url}/")
    phone.measure("start")
    page.goto(f"{live_url}/activate/identify")
    phone.measure("identify")
    _submit(page)
    expect(page.locator(".error-summary")).to_be_visible()
    phone.measure("identify-errors")

    for step in ("policies", "contacts", "password", "done"):
        who = enrol_student(services, "w")
        at = flow_at(step, who)
        _put_flow(page, live_url, FLOW_COOKIE, "/activate", at.flow_id)
        page.goto(f"{live_url}/activate/{step}")
        expect(page).to_have_url(f"{live_url}/activate/{step}")
        phone.measure(step)
        if step in ("policies", "password"):
            _submit(page)
            expect(page.locator(".error-summary")).to_be_visible()
            phone.measure(f"{step}-errors")

    # A sign-in request arriving mid-flow: the student is asked which to keep.
    at = flow_at("policies", enrol_student(services, "e"))
    _put_flow(page, live_url, FLOW_COOKIE, "/activate", at.flow_id)
    page.goto(f"{live_url}/oidc/authorize?{urlencode(broker_request(settings, pkce()[1]))}")
    expect(page.locator("form[action$='/sign-in/keep']")).to_be_visible()
    phone.measure("sign-in-elsewhere")
    page.goto(f"{live_url}/no-such-page")
    phone.measure("not-found")
    bad = {**broker_request(settings, pkce()[1]), "redirect_uri": "https://attacker.example/cb"}
    page.goto(f"{live_url}/oidc/authorize?{urlencode(bad)}")
    phone.measure("sign-in-link-invalid")

    page.goto(f"{live_url}/recover/")
    phone.measure("recover-start")
    _submit(page)
    expect(page.locator(".error-summary")).to_be_visible()
    phone.measure("recover-start-errors")
    active = enrol_student(services, "r")
    activate_student(app, inbox, active)
    for step in ("code", "choose", "new-password"):
        at_step = put_recovery_at(app, inbox, step, active)
        _put_flow(page, live_url, RECOVERY_COOKIE, "/recover", at_step.flow_id)
        page.goto(f"{live_url}/recover/{step}")
        expect(page).to_have_url(f"{live_url}/recover/{step}")
        phone.measure(f"recover-{step}")
        if step != "code":
            _submit(page)
            expect(page.locator(".error-summary")).to_be_visible()
            phone.measure(f"recover-{step}-errors")
    phone.assert_all_fit(SERVICE_PAGES)


@pytest.fixture(scope="module")
def console_admin(module_staff: RealmChanges) -> str:
    return module_staff.add_staff("activation-admin").username


@pytest.fixture(scope="module")
def no_role(module_staff: RealmChanges) -> str:
    return module_staff.add_staff().username


def _busy_student(app: Flask, services: Services) -> StudentDetails:
    """A student whose timeline has long lines: failures, a lock, codes, a restart."""
    who = enrol_student(services, "b", intake=f"intake-{secrets.token_hex(6)}")
    flow = FlowClient(app.test_client())
    for _ in range(5):
        flow.identify(who, id_last4="0000")
    assert flow.identify(who).status_code == 429
    return who


HELPDESK_PAGES = [
    "home",
    "home-not-a-user-id",
    "student",
    "new-code-question",
    "new-code",
    "new-code-shown-already",
    "not-found",
    "lockouts",
    "funnel",
    "recoveries",
    "realm-health",
    "signed-out",
    "no-role",
]


@pytest.mark.parametrize("language", LANGUAGES)
def test_helpdesk_pages(
    phone_for: Callable[[str], Phone],
    live_url: str,
    app: Flask,
    services: Services,
    console_admin: str,
    no_role: str,
    realm_check: RealmCheck,
    language: str,
) -> None:
    phone = phone_for(language)
    page = phone.page
    who = _busy_student(app, services)
    realm_check()  # the page shows the latest stored result
    page.goto(f"{live_url}/helpdesk/")
    enter_username(page, console_admin)
    enter_password(page, STAFF_PASSWORD)
    page.wait_for_url(f"{live_url}/helpdesk/")
    phone.measure("home")
    page.goto(f"{live_url}/helpdesk/?user_id=5432167(8)")
    expect(page.locator(".notice")).to_be_visible()
    phone.measure("home-not-a-user-id")
    page.goto(f"{live_url}/helpdesk/students/{who.user_id}")
    phone.measure("student")
    page.locator("form[action$='/code'] button").click()
    phone.measure("new-code-question")
    page.locator("main form[action$='/code'] button[value=yes]").click()
    expect(page.locator("#new-code .code")).to_be_visible()
    phone.measure("new-code")
    page.reload()
    expect(page.locator(".notice")).to_be_visible()
    phone.measure("new-code-shown-already")
    page.goto(f"{live_url}/helpdesk/students/zz{secrets.randbelow(10**5):05d}")
    phone.measure("not-found")
    page.goto(f"{live_url}/helpdesk/lockouts")
    expect(page.locator("#locked-ids")).to_be_visible()
    phone.measure("lockouts")
    page.goto(f"{live_url}/helpdesk/funnel")
    phone.measure("funnel")
    page.goto(f"{live_url}/helpdesk/recoveries")
    phone.measure("recoveries")
    page.goto(f"{live_url}/helpdesk/realm-health")
    expect(page.locator("#checks")).to_be_visible()
    phone.measure("realm-health")
    page.locator("form[action$='/helpdesk/logout'] button").click()
    page.wait_for_url(f"{live_url}/helpdesk/signed-out")
    phone.measure("signed-out")
    page.goto(f"{live_url}/helpdesk/")
    enter_username(page, no_role)
    enter_password(page, STAFF_PASSWORD)
    expect(page).to_have_url(re.compile(re.escape(f"{live_url}/helpdesk/callback")))
    phone.measure("no-role")
    phone.assert_all_fit(HELPDESK_PAGES)


KEYCLOAK_PAGES = [
    "username",
    "password",
    "wrong-password",
    "locked",
    "locked-at-username",
    "pending-turned-back",
    "broker-refused",
    "reset-refused",
    "invalid-request",
]


@pytest.mark.parametrize("language", LANGUAGES)
def test_keycloak_pages(
    phone_for: Callable[[str], Phone],
    live_url: str,
    app: Flask,
    keycloak_server: KeycloakUnderTest,
    realm: RealmUnderTest,
    admin: KeycloakAdmin,
    services: Services,
    realm_changes: RealmChanges,
    language: str,
) -> None:
    phone = phone_for(language)
    page = phone.page
    locale = KEYCLOAK_LOCALE[language]

    def text(key: str) -> str:
        return keycloak_text(keycloak_server.url, realm.name, locale, key)

    realm_url = f"{keycloak_server.url}/realms/{realm.name}"
    params, _verifier = authorization_request("umpass-demo", demo_callback())
    sign_in = f"{realm_url}/protocol/openid-connect/auth?" + urlencode(
        {**params, "ui_locales": locale}
    )
    active = enrol_student(services, "k")
    account = services.keycloak.find_user(active.user_id)
    assert account is not None
    services.keycloak.activate(
        account.id, PASSWORD, attributes={ACCEPTED_POLICIES: accepted_now(services)}
    )

    page.goto(sign_in)
    phone.measure("username", keycloak=True)
    enter_username(page, active.user_id)
    phone.measure("password", keycloak=True)
    enter_password(page, "not my password 1")
    expect(page.locator("#input-error-password")).to_be_visible()
    phone.measure("wrong-password", keycloak=True)
    try:
        for attempt in range(2, admin.get_realm(realm.name)["failureFactor"] + 1):
            enter_password(page, f"not my password {attempt}")
            expect(page.locator("#password")).to_have_value("")
        enter_password(page, PASSWORD)  # refused while the lock holds
        expect(page.locator(".pf-v5-c-alert.pf-m-danger")).to_be_visible()
        phone.measure("locked", keycloak=True)
        page.goto(sign_in)
        enter_username(page, active.user_id)
        expect(page.locator("#input-error-username")).to_be_visible()
        phone.measure("locked-at-username", keycloak=True)
    finally:
        admin.clear_bruteforce_attempts_for_user(account.id)

    # A pending student sent to the service, who goes back to sign-in unactivated.
    pending = enrol_student(services, "p")
    page.goto(sign_in)
    enter_username(page, pending.user_id)
    page.locator(".return-to-sign-in button").click()  # moves on to Keycloak by itself
    expect(page).to_have_url(re.compile(re.escape(realm_url) + r"/broker/"))
    phone.measure("pending-turned-back", keycloak=True, says=text("umpassActivationUnavailable"))

    # The realm's broker flows refusing an assertion (the service made to name a staff
    # account): Keycloak's deny page.
    page.goto(sign_in)
    with page.expect_request(re.compile(re.escape(live_url) + r"/oidc/authorize\?")) as sent:
        enter_username(page, pending.user_id)
    expect(page.locator(".return-to-sign-in button")).to_be_visible()
    authorize = {k: v[0] for k, v in parse_qs(urlparse(sent.value.url).query).items()}
    staff = realm_changes.add_staff()
    with app.test_request_context():
        answer = handoff.answer(authorize, Subject(keycloak_id=staff.id, username=staff.username))
    found = re.search(r'content="\d+;url=([^"]+)"', str(answer))
    assert found is not None
    page.goto(html.unescape(found.group(1)))
    phone.measure(
        "broker-refused", keycloak=True, says=text("identityProviderUnexpectedErrorMessage")
    )

    page.goto(f"{realm_url}/login-actions/reset-credentials?client_id=umpass-demo")
    phone.measure("reset-refused", keycloak=True, says=text("resetCredentialNotAllowedMessage"))
    bad = {**params, "redirect_uri": "https://attacker.example/cb", "ui_locales": locale}
    page.goto(f"{realm_url}/protocol/openid-connect/auth?{urlencode(bad)}")
    phone.measure("invalid-request", keycloak=True)
    phone.assert_all_fit(KEYCLOAK_PAGES)
