"""The policy pages in Chromium at 360 px, in English, Traditional Chinese and Portuguese:
an admin publishes a new version from the console (overview, the question, the answer),
then a student part-way through activation is taken back to the policies step and reads
what changed, and an active student signing in to a campus app meets the review page of
the realm's policy gate (in the language Keycloak showed), declines, and is refused.
Each page is first proven to be that page in that language (page_states),
then checked by axe-core (zero violations) and measured: no sideways scrolling.

Screenshots go to artifacts/browser/axe/<language>/policy_pages/.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest
from flask import Flask
from playwright.sync_api import Browser, Page, expect

from provider.flows.engine import FLOW_COOKIE
from provider.policies import find
from provider.services import Services
from tests.browser.page_states import BROWSER_LOCALE, LANGUAGES, POLICY_PAGES, Walk, Where
from tests.browser.sso import enter_password, enter_username
from tests.conftest import KeycloakUnderTest, RealmUnderTest
from tests.support.flow_at import FlowAt
from tests.support.policies import accepted_now, current_policies, unpublished_after
from tests.support.realm_changes import RealmChanges
from tests.support.staff import STAFF_PASSWORD
from tests.support.students import active_student, enrol_student

PHONE = {"width": 360, "height": 740}
NEW = find("it-acceptable-use", "2027-01")
PASSWORD = "lantern orbit velvet meadow 42"
assert NEW is not None


@pytest.fixture(scope="module")
def console_admin(module_staff: RealmChanges) -> str:
    return module_staff.add_staff("activation-admin").username


@pytest.fixture
def shots(language: str, artifacts: Path) -> Path:
    folder = artifacts / "axe" / language / "policy_pages"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    return folder


def _fits(page: Page) -> None:
    width, window = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert (window, width <= window) == (PHONE["width"], True), f"{width} px wide"


@pytest.mark.parametrize("language", LANGUAGES)
def test_publish_then_a_student_part_way_accepts_the_new_version(
    browser: Browser,
    app: Flask,
    live_url: str,
    keycloak_server: KeycloakUnderTest,
    realm: RealmUnderTest,
    services: Services,
    flow_at: FlowAt,
    console_admin: str,
    demo_url: str,
    language: str,
    shots: Path,
) -> None:
    walk = Walk(
        app, Where(live_url, keycloak_server.url, realm.name), language, POLICY_PAGES, shots
    )
    about = {"version": NEW.version, "title": NEW.title_in(language)}
    # Part-way: past the policies (accepted 2026-09), at the password step.
    student = flow_at("password", enrol_student(services, "v"))
    active = active_student(services, "w", PASSWORD, accepted_now(services))
    context = browser.new_context(viewport=PHONE, bypass_csp=True, locale=BROWSER_LOCALE[language])
    page = context.new_page()
    with unpublished_after(services, NEW.id, NEW.version):
        page.goto(f"{live_url}/language/{language}?next=/helpdesk/policies/")
        enter_username(page, console_admin)
        enter_password(page, STAFF_PASSWORD)
        walk.check(page, "helpdesk-policies")
        _fits(page)
        page.get_by_role("button", name=f"{NEW.version}").click()
        walk.check(page, "helpdesk-confirm-publish", **about)
        _fits(page)
        page.locator("main form button[value=yes]").click()
        walk.check(page, "helpdesk-published", **about)
        _fits(page)
        assert NEW in current_policies(services)

        host = urlparse(live_url).hostname
        page.context.add_cookies(
            [{"name": FLOW_COOKIE, "value": student.flow_id, "domain": host, "path": "/activate"}]
        )
        # The password page is shown as it is; its submit is where a new version is
        # noticed, before anything is written to the account.
        page.goto(f"{live_url}/activate/password")
        expect(page).to_have_url(f"{live_url}/activate/password")
        page.fill("#password", PASSWORD)
        page.fill("#confirm", PASSWORD)
        page.locator("#confirm").press("Enter")
        walk.check(page, "policies-reopened", version="2026-09")
        _fits(page)
        for box in page.locator("input[type=checkbox]").all():
            box.check()
        page.locator("main form[method=post] button[type=submit]").first.click()
        expect(page).to_have_url(f"{live_url}/activate/contacts")
        accepted = student.flow().data.accepted_policies
        assert any(r.startswith(NEW.key + ":") for r in accepted)

        # A browser of its own: Keycloak's language (from the browser) reaches the page.
        signing_in = browser.new_context(
            viewport=PHONE, bypass_csp=True, locale=BROWSER_LOCALE[language]
        )
        page = signing_in.new_page()
        page.goto(f"{demo_url}/login")
        enter_username(page, active.user_id)
        enter_password(page, PASSWORD)
        walk.check(page, "policy-review", version="2026-09")
        _fits(page)
        page.locator("main form[method=post] button[type=submit]").first.click()
        walk.check(page, "policy-review-errors")
        _fits(page)
        page.locator(".decline button[type=submit]").click()
        walk.check(page, "keycloak-policy-declined")
        signing_in.close()
    context.close()
    walk.assert_complete_and_clean()  # every state walked, axe: zero violations
