"""The whole flow, contact proof included, in Traditional Chinese and Portuguese (and
English), walked in Chromium at 360 px without JavaScript, with screenshots (axe in each
language: test_accessibility.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import pytest
from playwright.sync_api import Browser, expect

from provider.keycloak import STATE_ACTIVE
from provider.services import Services
from tests.browser.test_activation_in_chromium import PASSWORD
from tests.support.date_boxes import fill_date_of_birth
from tests.support.inbox import Inbox
from tests.support.shots import Shots
from tests.support.students import enrol_student

EXPECTED = {
    "zh_Hant": {
        "lang": "zh-Hant",
        "browser": "zh-MO",
        "step1": "第 1 步，共 5 步",
        "done": "您的帳戶已啟用",
        "email_sent": "電郵中的驗證碼",
    },
    "pt": {
        "lang": "pt",
        "browser": "pt-PT",
        "step1": "Passo 1 de 5",
        "done": "A sua conta está ativa",
        "email_sent": "Código do email",
    },
    "en": {
        "lang": "en",
        "browser": "en-GB",
        "step1": "Step 1 of 5",
        "done": "Your account is active",
        "email_sent": "Code from the email",
    },
}


@pytest.mark.parametrize("language", ["zh_Hant", "pt", "en"])
def test_flow_in_each_language(
    browser: Browser,
    live_url: str,
    services: Services,
    inbox: Inbox,
    shots_in: Callable[[str], Shots],
    language: str,
) -> None:
    expected = EXPECTED[language]
    student = enrol_student(
        services,
        "l",
        first_name="Lam",
        last_name="Sou",
        date_of_birth=date(2006, 8, 8),
        id_number="M1234567",
    )
    user_id, phone, email = student.user_id, student.phone, student.email
    shots = shots_in(language)
    # No JavaScript, as on the simplest phone; a second context with it runs axe.
    context = browser.new_context(
        viewport={"width": 360, "height": 740},
        java_script_enabled=False,
        locale=expected["browser"],  # the phone's own language shapes the date picker
    )
    page = context.new_page()
    page.goto(f"{live_url}/language/{language}?next=/activate/")
    assert page.locator("html").get_attribute("lang") == expected["lang"]
    assert page.locator(".caption").inner_text() == expected["step1"]
    shots.take(page, "identify")
    page.fill("#user_id", user_id)
    page.fill("#activation_code", student.code)
    fill_date_of_birth(page, date(2006, 8, 8))
    page.fill("#id_last4", "4567")
    page.click("button[type=submit]")
    # The policies page first (its checkboxes are collected at once, without waiting).
    expect(page).to_have_url(f"{live_url}/activate/policies")
    shots.take(page, "policies")
    for box in page.locator("input[type=checkbox]").all():
        box.check()
    page.click("button[type=submit]")
    shots.take(page, "contacts")
    page.click("button[value=send-email]")  # keep both; prove the email in one tap
    assert expected["email_sent"] in page.content()
    page.fill("#code_email", inbox.email_code(email))
    page.click("button[value=send-phone]")  # the email's code typed is checked on the way
    shots.take(page, "contacts-confirmed")
    page.fill("#code_phone", inbox.sms_code(phone))
    page.click("button[value=continue]:visible")
    shots.take(page, "password")
    page.fill("#password", PASSWORD)
    page.fill("#confirm", PASSWORD)
    page.click("form[data-strength-url] button[type=submit]")
    assert expected["done"] in page.content()
    shots.take(page, "done")
    context.close()
    user = services.keycloak.find_user(user_id)
    assert user is not None and user.activation_state == STATE_ACTIVE
    # The code email and text came in the student's language.
    mail = inbox.mails_to(email)[0]
    assert mail.message["Content-Language"] == expected["lang"]
    if language != "en":
        assert "Your UMPASS confirmation code" not in mail.text
        assert "UMPASS code:" not in inbox.texts_to(phone)[0]
