"""axe-core (from npm) on every page of the flow, in Chromium at 360 px: zero violations.

axe is injected as a script, which the pages' own CSP forbids, so this context alone
runs with `bypass_csp`; the other browser tests keep the CSP enforced.
"""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path
from urllib.parse import urlencode

from playwright.sync_api import Browser, Page, expect

from provider.config import Settings
from provider.services import Services
from tests.browser.test_activation_in_chromium import PASSWORD
from tests.support.broker import broker_request, pkce
from tests.support.inbox import Inbox
from tests.support.students import enrol_student

AXE_JS = os.environ.get("UMPASS_AXE_JS", "")
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


def axe_check(page: Page, name: str, report: dict[str, list[dict]]) -> None:
    """Run axe-core on the page as it is now; record its violations under `name`."""
    page.add_script_tag(path=AXE_JS)
    result = page.evaluate(
        "async (tags) => await axe.run(document, {runOnly: {type: 'tag', values: tags}})",
        WCAG_TAGS,
    )
    report[name] = [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:3]}
        for v in result["violations"]
    ]


def test_every_step_has_no_axe_violations(
    browser: Browser,
    live_url: str,
    services: Services,
    inbox: Inbox,
    settings: Settings,
    artifacts: Path,
) -> None:
    assert Path(AXE_JS).is_file(), "UMPASS_AXE_JS must point at axe.min.js (scripts/test sets it)"
    student = enrol_student(
        services,
        "x",
        first_name="Axe",
        last_name="Check",
        date_of_birth=date(2003, 3, 3),
        id_number="Z7654321",
    )
    user_id, phone, email = student.user_id, student.phone, student.email
    context = browser.new_context(viewport={"width": 360, "height": 740}, bypass_csp=True)
    page = context.new_page()
    report: dict[str, list[dict]] = {}

    page.goto(f"{live_url}/")
    axe_check(page, "start", report)
    page.goto(f"{live_url}/activate/")
    axe_check(page, "identify", report)
    page.get_by_role("button", name="Continue").click()
    axe_check(page, "identify-errors", report)
    page.get_by_label("User ID").fill(user_id)
    page.get_by_label("Activation code").fill(student.code)
    page.get_by_label("Date of birth").fill("2003-03-03")
    page.get_by_label("Last 4 characters of your ID or passport number").fill("4321")
    page.get_by_role("button", name="Continue").click()
    axe_check(page, "policies", report)
    page.get_by_role("button", name="Accept and continue").click()
    axe_check(page, "policies-errors", report)
    for box in page.get_by_role("checkbox").all():
        box.check()
    page.get_by_role("button", name="Accept and continue").click()
    axe_check(page, "contacts-choose", report)
    # Any page may send this browser to the provider's authorize endpoint mid-flow: the
    # student is asked rather than losing the flow.
    page.goto(f"{live_url}/oidc/authorize?{urlencode(broker_request(settings, pkce()[1]))}")
    expect(page.get_by_role("heading", name="Another sign-in started")).to_be_visible()
    axe_check(page, "sign-in-elsewhere", report)
    page.get_by_role("button", name="Continue my activation").click()
    expect(page.get_by_role("heading", name="Your phone and email")).to_be_visible()
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("button", name="Send code").first.click()
    axe_check(page, "contacts-verify", report)
    page.get_by_label("Code from the email").fill(inbox.email_code(email))
    page.get_by_role("button", name="Verify").click()
    page.get_by_role("button", name="Send code").click()
    page.get_by_label("Code from the text message").fill(inbox.sms_code(phone))
    page.get_by_role("button", name="Verify").click()
    axe_check(page, "contacts-confirmed", report)
    page.get_by_role("button", name="Continue").click()
    axe_check(page, "password", report)
    page.get_by_label("New password").fill("short")
    page.get_by_label("Type it again").fill("short")
    page.get_by_role("button", name="Activate my account").click()
    axe_check(page, "password-errors", report)
    page.get_by_label("New password").fill(PASSWORD)
    page.get_by_label("Type it again").fill(PASSWORD)
    page.get_by_role("button", name="Activate my account").click()
    axe_check(page, "done", report)
    context.close()

    (artifacts / "axe-report.json").write_text(json.dumps(report, indent=2))
    assert len(report) == 12
    violations = {page: found for page, found in report.items() if found}
    assert violations == {}, json.dumps(violations, indent=2)


def test_keyboard_only_reaches_and_submits_identify(browser: Browser, live_url: str) -> None:
    context = browser.new_context(viewport={"width": 360, "height": 740})
    page = context.new_page()
    page.goto(f"{live_url}/activate/")
    page.keyboard.press("Tab")  # the skip link comes first
    assert page.evaluate("document.activeElement.className") == "skip-link"
    order: list[str] = []
    for _ in range(20):  # past the language links; a date input takes one stop per part
        page.keyboard.press("Tab")
        here = page.evaluate("document.activeElement.id || document.activeElement.type")
        if here != "user_id" and not order:
            continue
        if not order or order[-1] != here:
            order.append(here)
        if here == "submit":
            break
    assert order == ["user_id", "activation_code", "date_of_birth", "id_last4", "submit"]
    page.keyboard.press("Enter")  # on the submit button with every field empty
    expect(page.locator(".error-summary")).to_be_visible()
    expect(page.locator(".error-summary")).to_be_focused()  # it takes focus (autofocus)
    context.close()
