"""A student walks the activation in real Chromium, then signs in at Keycloak.

The service pages are walked with JavaScript switched OFF on a 360-pixel-wide screen
(they must work without it); the Keycloak sign-in afterwards uses a normal browser
context, as Keycloak's account console needs JavaScript. Every step is saved as a
screenshot under artifacts/browser/.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from playwright.sync_api import Browser, Page, expect

from provider.keycloak import STATE_ACTIVE
from provider.services import Services
from tests.browser.sso import enter_password, enter_username
from tests.support.date_boxes import type_date_of_birth
from tests.support.inbox import Inbox
from tests.support.shots import Shots
from tests.support.students import enrol_student

PASSWORD = "harbour kettle saffron 2029"


def prove_contacts(page: Page, inbox: Inbox, email: str, phone: str, shots: Shots | None) -> None:
    """Keep both contacts and prove each with the code that really arrives (a kept contact
    needs none, but recovery needs proven ones): one tap on the choice page sends the
    email's code, the codes page offers the phone's; one Continue checks what is typed."""
    page.get_by_role("button", name="Send a code to confirm your email address").click()
    page.get_by_label("Code from the email").fill(inbox.email_code(email))
    if shots:
        shots.take(page, "contacts-code-sent")
    page.get_by_role("button", name="Send a code to confirm").click()  # keeps the typed one
    assert page.locator(".confirmed").count() == 1
    page.get_by_label("Code from the text message").fill(inbox.sms_code(phone))
    if shots:
        shots.take(page, "contacts-confirmed")
    page.get_by_role("button", name="Continue").click()


def test_student_activates_without_javascript_then_signs_in(
    browser: Browser,
    live_url: str,
    services: Services,
    inbox: Inbox,
    shots_in: Callable[[str], Shots],
) -> None:
    student = enrol_student(
        services,
        "w",
        first_name="Sam",
        last_name="Leong",
        date_of_birth=date(2006, 12, 1),
        id_number="1234567(8)",
    )
    user_id, phone, email = student.user_id, student.phone, student.email
    shots = shots_in("")
    context = browser.new_context(viewport={"width": 360, "height": 740}, java_script_enabled=False)
    page = context.new_page()

    page.goto(f"{live_url}/")
    shots.take(page, "start")
    page.get_by_role("button", name="Start now").click()
    assert page.locator(".caption").inner_text() == "Step 1 of 5"
    shots.take(page, "identify")

    page.get_by_label("User ID").fill(user_id.upper())
    page.get_by_label("Activation code").fill(student.code)
    type_date_of_birth(page, date(2006, 12, 1))
    page.get_by_label("Last 4 characters of your ID or passport number").fill("0000")
    page.get_by_role("button", name="Continue").click()
    assert "We could not match those details" in page.locator(".error-summary").inner_text()
    shots.take(page, "identify-mismatch")

    page.get_by_label("Activation code").fill(student.code)
    page.get_by_label("Last 4 characters of your ID or passport number").fill("5678")
    page.get_by_role("button", name="Continue").click()
    expect(page.locator(".caption")).to_have_text("Step 2 of 5")
    shots.take(page, "policies")
    for box in page.get_by_role("checkbox").all():
        box.check()
    page.get_by_role("button", name="Accept and continue").click()

    assert page.locator(".caption").inner_text() == "Step 3 of 5"
    assert f"+853 ••••{phone[-4:]}" in page.content()
    shots.take(page, "contacts")
    prove_contacts(page, inbox, email, phone, shots)

    assert page.locator(".caption").inner_text() == "Step 4 of 5"
    shots.take(page, "password")
    page.get_by_label("New password").fill("password1234")
    page.get_by_label("Type it again").fill("password1234")
    page.get_by_role("button", name="Activate my account").click()
    assert "Choose a harder password" in page.locator(".error-summary").inner_text()
    shots.take(page, "password-refused")
    page.get_by_label("New password").fill(PASSWORD)
    page.get_by_label("Type it again").fill(PASSWORD)
    page.get_by_role("button", name="Activate my account").click()

    assert page.get_by_role("heading", name="Your account is active").is_visible()
    shots.take(page, "done")
    user = services.keycloak.find_user(user_id)
    assert user is not None and user.activation_state == STATE_ACTIVE
    sso_url = page.get_by_role("link", name="Sign in now").get_attribute("href")
    assert sso_url
    context.close()

    # The real SSO sign-in at Keycloak with the new password.
    sso = browser.new_context(viewport={"width": 360, "height": 740})
    page = sso.new_page()
    page.goto(sso_url)
    page.wait_for_selector("#username")
    shots.take(page, "keycloak-sign-in")
    enter_username(page, user_id)
    enter_password(page, PASSWORD)
    page.wait_for_url(lambda url: "/account" in url and "login-actions" not in url)
    # The account console greets the student by name (in a menu, hidden on phones).
    page.get_by_text("Sam Leong").first.wait_for(state="attached", timeout=30_000)
    # What the student sees once the console has drawn: its first heading.
    page.locator("h1").first.wait_for(state="visible", timeout=30_000)
    shots.take(page, "signed-in")
    sso.close()
    assert shots.count == 12


def test_live_strength_meter_with_javascript(
    browser: Browser,
    live_url: str,
    services: Services,
    inbox: Inbox,
    shots_in: Callable[[str], Shots],
) -> None:
    student = enrol_student(
        services,
        "m",
        first_name="Ming",
        last_name="Ho",
        date_of_birth=date(2005, 1, 2),
        id_number="A1234567",
    )
    user_id, phone, email = student.user_id, student.phone, student.email
    context = browser.new_context(viewport={"width": 360, "height": 740})
    page = context.new_page()
    problems: list[str] = []
    page.on(
        "console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None
    )
    page.goto(f"{live_url}/activate/")
    page.get_by_label("User ID").fill(user_id)
    page.get_by_label("Activation code").fill(student.code)
    type_date_of_birth(page, date(2005, 1, 2))
    page.get_by_label("Last 4 characters of your ID or passport number").fill("4567")
    page.get_by_role("button", name="Continue").click()
    # The policies page first: `.all()` does not wait, and on the identify page it is [].
    expect(page.locator(".caption")).to_have_text("Step 2 of 5")
    for box in page.get_by_role("checkbox").all():
        box.check()
    page.get_by_role("button", name="Accept and continue").click()
    prove_contacts(page, inbox, email, phone, None)
    page.get_by_label("New password").press_sequentially("ming02012005", delay=10)
    # Locator assertions, not page-evaluated script: the page's CSP forbids eval.
    expect(page.locator("#strength-text")).to_contain_text(
        "Your password cannot contain your date of birth."
    )
    shots_in("").take(page, "z-meter")
    page.get_by_label("New password").fill("")
    page.get_by_label("New password").press_sequentially(PASSWORD + " x", delay=5)
    expect(page.locator("#strength-text")).to_have_text("Very strong.")
    assert problems == []  # no CSP violation, no failed request, no script error
    context.close()
