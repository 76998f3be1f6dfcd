"""The contacts step in Chromium at 360 px: the "new code in N seconds" wait counts down
under the page's CSP where JavaScript runs (then the button comes), says how to go on
where it does not, and Enter on the choice page chooses (a kept contact gets no code)."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

from flask import Flask
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, expect
from sqlalchemy import select

from provider.flows.engine import FLOW_COOKIE
from provider.services import Services
from provider.storage.models import ContactSend
from tests.support.flow_at import put_flow_at
from tests.support.flow_client import StudentDetails
from tests.support.inbox import Inbox, new_mobile
from tests.support.students import enrol_student

PHONE = {"width": 360, "height": 740}
WAIT = re.compile(r"New code in (\d+) seconds?\.")


def _at_contacts(
    browser: Browser, live_url: str, app: Flask, services: Services, inbox: Inbox, **options: bool
) -> tuple[BrowserContext, Page, StudentDetails]:
    """A phone-sized browser whose flow is at the contacts step, on its page."""
    who = enrol_student(services, "q")
    flow = put_flow_at(app, inbox, "contacts", who)
    context = browser.new_context(viewport=PHONE, **options)
    host = urlsplit(live_url).hostname or ""
    assert flow.flow_id is not None
    context.add_cookies(
        [{"name": FLOW_COOKIE, "value": flow.flow_id, "domain": host, "path": "/activate"}]
    )
    page = context.new_page()
    page.goto(f"{live_url}/activate/contacts")
    expect(page.get_by_role("heading", level=1)).to_have_text("Your phone and email")
    return context, page, who


def _sends_are_older(services: Services, user_id: str, seconds: int) -> None:
    """As if the last code went `seconds` earlier (the wait is 60 s from it)."""
    with services.sessions.begin() as session:
        for send in session.scalars(select(ContactSend).where(ContactSend.user_id == user_id)):
            send.at -= timedelta(seconds=seconds)


def test_the_wait_counts_down_then_the_button_comes(
    browser: Browser, live_url: str, app: Flask, services: Services, inbox: Inbox
) -> None:
    context, page, who = _at_contacts(browser, live_url, app, services, inbox)
    console: list[str] = []

    def keep(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            console.append(message.text)  # a CSP refusal shows here

    page.on("console", keep)
    page.on("pageerror", lambda error: console.append(str(error)))
    page.get_by_role("button", name="Send a code to confirm your email address").click()
    wait = page.locator(".resend-wait__text")
    expect(wait).to_have_text(WAIT)
    first = wait.inner_text()
    expect(wait).not_to_have_text(first)  # it moves, no reload
    before, now = (WAIT.fullmatch(text) for text in (first, wait.inner_text()))
    assert before and now and 0 < int(now[1]) < int(before[1]) <= 60
    expect(page.locator(".resend-wait__reload")).to_be_hidden()  # the button will come itself
    resend = page.get_by_role("button", name="Send a new code")
    expect(resend).to_be_hidden()
    # Near the end of the wait (loaded again): the last seconds, then the button instead.
    _sends_are_older(services, who.user_id, 57)
    page.goto(f"{live_url}/activate/contacts")
    expect(resend).to_be_visible(timeout=8000)
    expect(page.locator(".resend-wait")).to_be_hidden()
    assert console == []
    context.close()


def test_without_javascript_the_page_says_to_reload_and_the_link_brings_the_button(
    browser: Browser, live_url: str, app: Flask, services: Services, inbox: Inbox
) -> None:
    context, page, who = _at_contacts(
        browser, live_url, app, services, inbox, java_script_enabled=False
    )
    page.get_by_role("button", name="Send a code to confirm your mobile number").click()
    expect(page.locator(".resend-wait__text")).to_have_text(WAIT)
    reload = page.get_by_role("link", name="Then reload this page to ask for it.")
    expect(reload).to_be_visible()
    resend = page.get_by_role("button", name="Send a new code")
    expect(resend).to_be_hidden()
    _sends_are_older(services, who.user_id, 60)
    reload.click()  # a plain GET: no "resubmit the form?" question
    expect(resend).to_be_visible()
    expect(page.locator(".resend-wait")).to_have_count(0)
    context.close()


def test_enter_on_the_choice_page_chooses_and_sends_only_the_new_contacts_code(
    browser: Browser, live_url: str, app: Flask, services: Services, inbox: Inbox
) -> None:
    """The "Send a code to confirm" buttons come before "Continue" in the form; Enter in a
    field must still press "Continue" (the form's hidden first button): the new number's
    code goes out with the choice, the kept email gets none. The new number's box shows
    only once "Use a different one" is chosen (CSS, no script)."""
    context, page, who = _at_contacts(browser, live_url, app, services, inbox)
    new = new_mobile()
    expect(page.get_by_label("New mobile number")).to_be_hidden()  # "Keep it" is chosen
    page.get_by_label("Use a different one").nth(1).check()
    expect(page.get_by_label("New mobile number")).to_be_visible()
    page.get_by_label("New mobile number").fill(new)
    page.get_by_label("New mobile number").press("Enter")
    expect(page.get_by_role("heading", name=re.compile("Your mobile number:"))).to_be_visible()
    expect(page.get_by_role("status").filter(has_text="Code sent.")).to_be_visible()
    expect(page.get_by_role("button", name="Continue")).to_have_class("button")  # primary
    assert len(inbox.texts_to(new)) == 1
    assert inbox.mails_to(who.email) == [] and inbox.texts_to(who.phone) == []
    context.close()
