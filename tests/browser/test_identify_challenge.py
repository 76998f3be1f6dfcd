"""The proof-of-work check in Chromium at 360 px, for a typed user ID locked twice in a row
by someone else's wrong attempts: with JavaScript the vendored widget solves it in a
worker from our own origin under the page's CSP and the student gets through; without
JavaScript the page says how to do without, and waiting it out works."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from flask import Flask
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from provider.services import Services
from tests.browser.page_states import AXE_JS, axe_violations
from tests.support.challenge import end_lock, make_hot
from tests.support.date_boxes import type_date_of_birth
from tests.support.flow_client import FlowClient, StudentDetails
from tests.support.shots import Shots
from tests.support.students import enrol_student

PHONE = {"width": 360, "height": 740}


def _hot_student(app: Flask, services: Services, prefix: str) -> StudentDetails:
    who = enrol_student(services, prefix)
    make_hot(app, services, who, FlowClient(app.test_client()))  # another browser's tries
    return who


def _fill(page: Page, who: StudentDetails) -> None:
    page.get_by_label("User ID").fill(who.user_id)
    page.get_by_label("Activation code").fill(who.code)
    type_date_of_birth(page, who.date_of_birth)
    page.get_by_label("Last 4 characters of your ID or passport number").fill(who.id_last4)


def test_the_widget_solves_the_check_and_the_student_gets_through(
    browser: Browser,
    live_url: str,
    app: Flask,
    services: Services,
    shots_in: Callable[[str], Shots],
) -> None:
    who = _hot_student(app, services, "j")
    shots = shots_in("challenge")
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    console: list[str] = []

    def keep(message: ConsoleMessage) -> None:
        # The refused submit's own page comes with status 400, which Chromium reports.
        expected = message.text.endswith("status of 400 (BAD REQUEST)")
        if message.type in ("error", "warning") and not expected:
            console.append(message.text)

    page.on("console", keep)
    page.on("pageerror", lambda error: console.append(str(error)))
    page.goto(f"{live_url}/activate/")
    expect(page.locator("altcha-widget")).to_have_count(0)  # this browser met no lock
    _fill(page, who)
    page.get_by_role("button", name="Continue").click()
    # Refused like any mismatch (this browser's form had no check), now with the check.
    expect(page.locator(".error-summary")).to_contain_text("We could not match those details")
    check = page.get_by_role("group", name="Automatic check")
    expect(check).to_be_visible()
    expect(check).to_contain_text("Without JavaScript the check cannot run")
    expect(check.get_by_label("Check my browser")).to_be_visible()  # our words, not the widget's
    shots.take(page, "identify-check")

    _fill(page, who)  # the student types the details again ...
    page.get_by_role("button", name="Continue").click()  # ... Continue waits for the check
    expect(page.locator(".caption")).to_have_text("Step 2 of 5", timeout=60_000)
    assert console == [], console  # no CSP refusal, no script error
    context.close()


def test_without_javascript_the_page_says_to_wait_and_waiting_works(
    browser: Browser,
    live_url: str,
    app: Flask,
    services: Services,
    shots_in: Callable[[str], Shots],
) -> None:
    who = _hot_student(app, services, "n")
    shots = shots_in("challenge-no-js")
    context = browser.new_context(viewport=PHONE, java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{live_url}/activate/")
    _fill(page, who)
    page.get_by_role("button", name="Continue").click()
    expect(page.locator(".error-summary")).to_contain_text("We could not match those details")
    plain_way = page.get_by_text("Without JavaScript the check cannot run: then try again in 60")
    expect(plain_way).to_be_visible()
    shots.take(page, "identify-check-no-js")
    _fill(page, who)
    page.get_by_role("button", name="Continue").click()  # no JS, no solution: refused again
    expect(page.locator(".error-summary")).to_contain_text("We could not match those details")
    end_lock(services, who.user_id, ago=timedelta(minutes=61))  # the hour has passed
    _fill(page, who)
    page.get_by_role("button", name="Continue").click()
    expect(page.locator(".caption")).to_have_text("Step 2 of 5")
    context.close()


def test_the_page_with_the_check_has_no_axe_violations(
    browser: Browser, live_url: str, app: Flask, services: Services
) -> None:
    assert Path(AXE_JS).is_file(), "UMPASS_AXE_JS must point at axe.min.js (scripts/test sets it)"
    who = _hot_student(app, services, "v")
    context = browser.new_context(viewport=PHONE, bypass_csp=True)
    page = context.new_page()
    page.goto(f"{live_url}/activate/")
    _fill(page, who)
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("group", name="Automatic check")).to_be_visible()
    violations = axe_violations(page)
    context.close()
    assert violations == []
