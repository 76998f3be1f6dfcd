"""The recovery flow's pages as a student meets them in Chromium, and the check each page
state gets: which page it is (URL, language, heading, the caption "Step n of N"), that it
fits a phone without scrolling sideways, a screenshot, and axe-core with zero violations.

Expected texts come from the app's own catalogues in the page's language (rendered through
Flask-Babel), so a translation added later changes nothing here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from flask import Flask
from playwright.sync_api import Page, expect

from provider.i18n import HTML_LANG
from tests.browser.page_states import axe_violations, service_text

PHONE = {"width": 360, "height": 740}
DESKTOP = {"width": 1280, "height": 900}
CAPTION = "Step %(number)s of %(count)s"
REMINDER = "#not-activated"

# The id of the link the `umpass` login theme puts under the password field and on the
# locked-account error (provider/themes/umpass/login/recovery.ftl).
RECOVER_LINK = "#umpass-recover-link"


@dataclass(frozen=True)
class RecoveryPage:
    path: str  # under /recover/
    heading: str  # the h1, as an English msgid
    step: int | None  # the caption's n; None: no caption (the finished page)
    reminder: bool = False  # the "not activated yet? use activation" reminder shows
    also: str = ""  # another text (an English msgid) that tells the state apart


TITLES = {
    "start": "Forgot your password or locked out?",
    "code": "Enter the code we sent",
    "birth-date": "Confirm your date of birth",
    "choose": "Unlock or set a new password",
    "new-password": "Choose a new password",
    "finished": "All done",
}
THERE_IS_A_PROBLEM = "There is a problem"


def pages(*, asks_birth_date: bool) -> dict[str, RecoveryPage]:
    """Every page state of one walk, by name (the steps numbered as the flow numbers them)."""
    order = ["start", "code", *(["birth-date"] if asks_birth_date else []), "choose"]
    order += ["new-password", "finished"]
    number = {name: index + 1 for index, name in enumerate(order)}

    def page(step: str, *, reminder: bool = False, also: str = "") -> RecoveryPage:
        # What was done is no step to fill in; an unlock skips one, so no "5 of 5" there.
        caption = None if step == "finished" else number[step]
        return RecoveryPage(step, TITLES[step], caption, reminder, also)

    email_sent = (
        "If the account has a confirmed email address, we have sent a 6-digit code to it. "
        "It works for 10 minutes."
    )
    text_sent = (
        "If the account has a confirmed mobile number, we have sent a 6-digit code to it by "
        "text message. It works for 10 minutes."
    )
    states = {
        "start": page("start", reminder=True),
        "start-errors": page("start", reminder=True, also=THERE_IS_A_PROBLEM),
        "code-email": page("code", reminder=True, also=email_sent),
        "code-wrong": page("code", reminder=True, also=THERE_IS_A_PROBLEM),
        "code-text": page("code", reminder=True, also=text_sent),
        "choose": page("choose"),
        "choose-errors": page("choose", also=THERE_IS_A_PROBLEM),
        "new-password": page("new-password", also="A good password"),
        "new-password-errors": page("new-password", also=THERE_IS_A_PROBLEM),
        "finished-reset": page(
            "finished",
            also="Your password is changed, and every device that was signed in is signed out.",
        ),
        "finished-unlock": page(
            "finished", also="Your account is unlocked. Your password has not changed."
        ),
    }
    if asks_birth_date:
        states["birth-date"] = page("birth-date")
        states["birth-date-errors"] = page("birth-date", also=THERE_IS_A_PROBLEM)
    return states


@dataclass
class PageCheck:
    """One language's walk through the recovery pages of one service (`base`)."""

    app: Flask
    base: str
    language: str
    states: dict[str, RecoveryPage]
    total: int  # the caption's N
    shots: Path
    axe: bool = True
    checked: list[str] = field(default_factory=list)
    violations: dict[str, list[dict]] = field(default_factory=dict)

    def text(self, msgid: str, **params: str) -> str:
        """`msgid` in this walk's language: never the English one, unless walking English
        (an untranslated message would pass for a page in any language)."""
        found = service_text(self.app, self.language, msgid, **params)
        assert isinstance(found, str)
        if self.language != "en":
            english = service_text(self.app, "en", msgid, **params)
            assert found != english, f"{msgid!r} is not translated to {self.language}"
        return found

    def check(self, page: Page, name: str) -> None:
        state = self.states[name]
        expect(page).to_have_url(re.compile("^" + re.escape(f"{self.base}/recover/{state.path}")))
        expect(page.locator("html")).to_have_attribute("lang", HTML_LANG[self.language])
        expect(page.locator("h1")).to_have_count(1)
        expect(page.locator("h1")).to_have_text(self.text(state.heading))
        if state.step is None:
            expect(page.locator(".caption")).to_have_count(0)
        else:
            expect(page.locator(".caption")).to_have_text(
                self.text(CAPTION, number=str(state.step), count=str(self.total))
            )
        if state.also:
            expect(page.locator("main")).to_contain_text(self.text(state.also))
        reminder = page.locator(REMINDER)
        if state.reminder:
            expect(reminder).to_be_visible()
            link = reminder.get_by_role("link", name=self.text("Activate your account"))
            assert urlparse(link.get_attribute("href") or "").path == "/activate/"
        else:
            expect(reminder).to_have_count(0)
        assert_fits(page)
        self.checked.append(name)
        shot = f"{len(self.checked):02d}-{name}"
        page.screenshot(path=self.shots / f"{shot}.png", full_page=True)
        if self.axe:
            self.violations[shot] = axe_violations(page)

    def assert_clean(self, expected: list[str]) -> None:
        assert self.checked == expected, "states left unwalked"
        assert not any(self.violations.values()), self.violations
        assert len(self.violations) == len(self.checked)


def assert_fits(page: Page) -> None:
    """Nothing sticks out sideways: the page is no wider than the window."""
    width = page.evaluate("document.documentElement.scrollWidth")
    viewport = page.viewport_size
    assert viewport is not None
    assert width <= viewport["width"], f"the page is {width} px wide in {viewport['width']} px"
