"""A first-time student in Chromium, walking the activation as the pages lead: read the
page, fill what it asks, tap what it offers. `scripts/bench journey` times it.

The walker follows what each page shows (its fields by name, its buttons by role and
value, Keycloak's sign-in form by its ids) rather than a fixed script, so the journey
still runs when the pages change: a date asked in one field or in three, a user ID
already filled in, kept contacts that need no code, a done page that moves on by itself.
Every tap is timed from the click to the next page's load event (`measured`); reading,
typing, taps and codes are counted for the fixed pace of `devstack.journey_pace`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Locator, Page

from devstack.journey_pace import PageReader, Tally, TextCount
from devstack.student_walk import Student

NAVIGATION_TIMEOUT_MS = 60_000
AUTO_ADVANCE_WAIT_S = 30.0  # how long a page may take to move on by itself
MAX_PAGES = 40  # a journey that never ends is a broken page, not a slow one

# Every visible text node (what a reader's eye meets; a visually hidden one, clipped to a
# pixel, is not), plus button-like inputs' values; and separately the policy bodies.
_VISIBLE_TEXT_JS = """
() => {
  const visible = (el) => {
    if (!el || !el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true})) return false;
    const box = el.getBoundingClientRect();
    return box.width > 1 && box.height > 1;
  };
  const collect = (root) => {
    const parts = [];
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const parent = node.parentElement;
      if (!parent || ["SCRIPT", "STYLE", "NOSCRIPT", "TEMPLATE"].includes(parent.tagName)) continue;
      if (node.textContent.trim() && visible(parent)) parts.push(node.textContent);
    }
    root.querySelectorAll('input[type=submit], input[type=button]').forEach((el) => {
      if (visible(el)) parts.push(el.value);
    });
    return parts.join(" ");
  };
  const policies = [...document.querySelectorAll('.policy-text, [data-policy-body]')]
    .filter((el) => !el.parentElement.closest('.policy-text, [data-policy-body]'));
  return {text: collect(document.body), policy: policies.map(collect).join(" ")};
}
"""


class JourneyStuck(Exception):
    """The walker met a page it could not get past; the message says which and why."""


@dataclass(frozen=True)
class NewContacts:
    """What a student who changes both contacts types: a new email and a local mobile."""

    email: str
    phone_typed: str  # as typed (a Macau number without its country code)
    phone_e164: str  # as the outbox addresses it


@dataclass(frozen=True)
class CodeSource:
    """Where a student's one-time codes arrive: read by channel and address, with how
    many have arrived so far (a new code is one more than before)."""

    count: Callable[[str, str], int]
    wait_code: Callable[[str, str, int], str]


@dataclass
class Walk:
    page: Page
    student: Student
    password: str
    codes: CodeSource
    new_contacts: NewContacts | None = None  # None: keep the Registry's contacts
    shots: Path | None = None
    tally: Tally = field(default_factory=Tally)
    trail: list[str] = field(default_factory=list)  # the pages met, in order
    _reader: PageReader = field(default_factory=PageReader)
    _waited: float = 0.0  # of the tap being timed: a page's own delay before moving on
    _before_choice: dict[str, int] = field(default_factory=dict)  # codes seen, by channel

    # -- the journey ------------------------------------------------------------------

    def run(self, start_url: str, *, ends: Callable[[Page], bool]) -> Tally:
        """From `start_url` (the service's start page or an app's sign-in link) until
        `ends(page)` holds; the tally of the whole journey."""
        self._timed(lambda: (self.page.goto(start_url, wait_until="load"), self._settle()))
        for _ in range(MAX_PAGES):
            if ends(self.page):
                return self.tally
            self._step()
        raise JourneyStuck(f"no end after {MAX_PAGES} pages: {' > '.join(self.trail)}")

    def _step(self) -> None:
        page = self.page
        path = urlsplit(page.url).path
        name = path.rstrip("/").rsplit("/", 1)[-1] or "start"
        if page.locator("#username").is_visible():
            self._keycloak_username()
        elif path.endswith("/activate/identify"):
            self._identify()
        elif path.endswith("/activate/policies"):
            self._policies()
        elif path.endswith("/activate/contacts"):
            self._contacts()
        elif path.endswith("/activate/password"):
            self._password()
        elif path.endswith("/activate/done"):
            self._done()
        elif self._primary().count():
            self._look(name)
            self._tap(self._primary().first)
        else:
            raise JourneyStuck(f"nothing to do on {page.url}: {self._problem()}")

    # -- the pages --------------------------------------------------------------------

    def _keycloak_username(self) -> None:
        self._look("keycloak-username")
        self._type(self.page.locator("#username"), self.student.user_id)
        self._tap(self.page.locator("#kc-login"))

    def _identify(self) -> None:
        self._look("identify")
        who = self.student
        form = self._form_of(self.page.locator("[name=activation_code]"))
        self._type(form.locator("[name=user_id]"), who.user_id, unless_shown=True)
        self._type(form.locator("[name=activation_code]"), who.code)
        self._date(form, who.date_of_birth)
        self._type(form.locator("[name=id_last4]"), who.id_last4)
        self._submit(form, "identify")

    def _date(self, form: Locator, when: date) -> None:
        """One date field (type=date or text) or three (day, month, year; a month may be
        a list), found by name."""
        single = form.locator("input[name=date_of_birth]")
        if single.count():
            # On a phone the digits are typed (or picked) once each: ddmmyyyy.
            self._fill(single, when.isoformat(), typed=len(when.strftime("%d%m%Y")))
            return
        parts = {"day": str(when.day), "month": str(when.month), "year": str(when.year)}
        for part, value in parts.items():
            field_ = form.locator(
                f"[autocomplete=bday-{part}], [name*=date][name*={part}], "
                f"[name*=birth][name*={part}], [name*=dob][name*={part}]"
            )
            if not field_.count():
                raise JourneyStuck(f"no {part} field for the date of birth on {self.page.url}")
            if field_.first.evaluate("el => el.tagName") == "SELECT":
                field_.first.select_option(value)
                self.tally.taps += 1
            else:
                self._type(field_.first, value)

    def _policies(self) -> None:
        self._look("policies")
        boxes = self.page.get_by_role("checkbox")
        for index in range(boxes.count()):
            box = boxes.nth(index)
            if box.is_visible() and not box.is_checked():
                box.check()
                self.tally.taps += 1
        self._submit(self._form_of(boxes.first), "policies")

    def _contacts(self) -> None:
        page = self.page
        if page.locator("input[type=radio]").count() or page.locator("[name=new_email]").count():
            self._choose_contacts()
        else:
            self._prove_contacts()

    def _choose_contacts(self) -> None:
        self._look("contacts")
        page = self.page
        change = self.new_contacts
        if change is not None:
            for channel, typed in (("email", change.email), ("phone", change.phone_typed)):
                other = page.locator(f"input[type=radio][name*={channel}]:not([value=keep])")
                if other.count() and not other.first.is_checked():
                    other.first.check()
                    self.tally.taps += 1
                self._read_now("contacts")  # what the choice revealed (the new box)
                self._type(page.locator(f"[name=new_{channel}]"), typed)
        else:
            keep = page.locator("input[type=radio][value=keep]")
            for index in range(keep.count()):
                if not keep.nth(index).is_checked():
                    keep.nth(index).check()
                    self.tally.taps += 1
        form = self._form_of(page.locator("[name=new_email]"))
        choose = form.locator("button[name=action][value=choose]")
        if change is not None:  # a new contact's code may go out with the choice
            addresses = {"email": change.email, "phone": change.phone_e164}
            self._before_choice = {c: self.codes.count(c, a) for c, a in addresses.items()}
        self._tap(choose if choose.count() else self._primary(form).first)

    def _prove_contacts(self) -> None:
        """Send, fetch and enter a code for each contact still unproven; then Continue.

        A student who keeps the Registry's contacts takes Continue as soon as it works
        without a code; whether it does is tried first and, when it does not, that try
        is not counted (the student would have read that codes are asked)."""
        page = self.page
        self._look("contacts")
        if self.new_contacts is None and self._try_continue():
            return
        addresses = {"email": self.student.email, "phone": self.student.phone}
        if self.new_contacts is not None:
            addresses = {"email": self.new_contacts.email, "phone": self.new_contacts.phone_e164}
        for channel in ("email", "phone"):
            send = page.locator(f"button[name=action][value=send-{channel}]")
            code_field = page.locator(f"[name=code_{channel}]")
            if code_field.count() and code_field.first.is_visible():
                # Sent already (with the choice): the code is the one that came then.
                arrived = self._before_choice.get(channel, 0)
            elif send.count() and send.first.is_visible():
                arrived = self.codes.count(channel, addresses[channel])
                self._tap(send.first)
                self._look("contacts")
            else:
                continue  # proven already, or never asked
            code = self.codes.wait_code(channel, addresses[channel], arrived)
            self.tally.codes += 1
            self._type(page.locator(f"[name=code_{channel}]"), code)
            verify = page.locator(f"button[name=action][value=verify-{channel}]:visible")
            if verify.count():  # a page that checks each code on its own
                self._tap(verify.first)
                self._look("contacts")
        self._tap(self._primary().first)

    def _try_continue(self) -> bool:
        page = self.page
        proceed = page.locator("button[name=action][value=continue]:visible")
        if not proceed.count():
            return False
        before = self.tally.measured_s
        seen = self._reader.remembered("contacts")
        self._tap(proceed.first)
        if not urlsplit(page.url).path.endswith("/activate/contacts"):
            return True
        # Codes are asked: undo the try (its tap, its time) and show the page again.
        self.tally.taps -= 1
        self.tally.pages -= 1
        self.tally.measured_s = before
        page.goto(page.url, wait_until="load")
        self._reader.restore("contacts", seen)
        return False

    def _password(self) -> None:
        self._look("password")
        page = self.page
        boxes = page.locator("input[type=password]")
        if boxes.count() < 1:
            raise JourneyStuck(f"no password field on {page.url}")
        for index in range(boxes.count()):
            if boxes.nth(index).is_visible():
                self._type(boxes.nth(index), self.password)
        self._submit(self._form_of(boxes.first), "password")

    def _done(self) -> None:
        """On the way back to sign-in: a done page that did not move on by itself (that
        one, `_settle` follows) offers a way on: read and tapped."""
        self._look("done")
        self._tap(self._primary().first)

    # -- reading, typing, tapping -----------------------------------------------------

    def _look(self, name: str, *, count_reading: bool = True) -> None:
        self.trail.append(name)
        if self.shots is not None:
            self.shots.mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(self.shots / f"{len(self.trail):02d}-{name}.png"))
        if count_reading:
            self._read_now(name)

    def _read_now(self, name: str) -> None:
        seen = self.page.evaluate(_VISIBLE_TEXT_JS)
        read, skimmed = self._reader.read(name, seen["text"], seen["policy"])
        self.tally.read += read
        self.tally.skimmed += skimmed
        by_page = self.tally.read_by_page
        by_page[name] = by_page.get(name, TextCount()) + read

    def read_final(self, name: str) -> None:
        """The last page, read to know what comes next (the direct path's done page)."""
        self._look(name)

    def _type(self, field_: Locator, value: str, *, unless_shown: bool = False) -> None:
        if not field_.count():
            raise JourneyStuck(f"no field {field_} on {self.page.url}")
        target = field_.first
        if unless_shown and target.input_value().strip().casefold() == value.casefold():
            return  # already filled in (the user ID carried from the sign-in page)
        self._fill(target, value, typed=len(value))

    def _fill(self, target: Locator, value: str, *, typed: int) -> None:
        target.fill(value)
        self.tally.typed_chars += typed

    def _submit(self, form: Locator, name: str) -> None:
        buttons = self._primary(form)
        if not buttons.count():
            raise JourneyStuck(f"no button to go on from {name} ({self.page.url})")
        self._tap(buttons.first)

    def _tap(self, target: Locator) -> None:
        """A tap that loads a page: 2 s of the student's, and the wall time until the
        next page has loaded (whatever redirects come between)."""
        self.tally.taps += 1
        self._timed(lambda: self._click_and_wait(target))
        problem = self._problem()
        if problem and self.trail and self.trail[-1] != "contacts":
            raise JourneyStuck(f"{self.trail[-1]}: {problem}")

    def _click_and_wait(self, target: Locator) -> None:
        with self.page.expect_navigation(wait_until="load", timeout=NAVIGATION_TIMEOUT_MS):
            target.click()
        self._settle()

    def _settle(self) -> None:
        """Follow pages that move on by themselves: a meta refresh at once (the service's
        way back to Keycloak) is part of the page load; one after a delay (a done page
        that goes on alone) is time the student waits, counted as `waited_s`."""
        for _ in range(MAX_PAGES):
            url = self.page.url
            try:
                refresh = self.page.locator("meta[http-equiv=refresh i]")
                content = refresh.first.get_attribute("content") if refresh.count() else None
            except PlaywrightError:  # the page went on while being looked at
                content = "0"
            if content is None:
                return
            delay = re.match(r"\s*(\d+)", content)
            started = time.perf_counter()
            self.page.wait_for_url(
                lambda now, before=url: now != before,  # type: ignore[misc]
                wait_until="load",
                timeout=AUTO_ADVANCE_WAIT_S * 1000,
            )
            if delay:  # the page's own delay; what follows it (redirects, load) is measured
                self._waited += min(float(delay.group(1)), time.perf_counter() - started)

    def _timed(self, action: Callable[[], object]) -> None:
        started = time.perf_counter()
        self._waited = 0.0
        action()
        self.tally.measured_s += time.perf_counter() - started - self._waited
        self.tally.waited_s += self._waited
        self.tally.pages += 1

    # -- finding things ---------------------------------------------------------------

    def _primary(self, within: Locator | None = None) -> Locator:
        """The page's main way on: a button (or a link styled as one) that is neither
        secondary nor a link-style button, nor one of the contacts page's side actions."""
        root = within if within is not None else self.page.locator("main")
        if not root.count():
            root = self.page.locator("body")
        return root.locator(
            "button[type=submit]:not(.link-button):not(.button--secondary)"
            ":not([value^=send-]):not([value^=verify-]):not([value=change]):visible, "
            "a.button:not(.button--secondary):visible, input[type=submit]:visible"
        )

    def _form_of(self, inside: Locator) -> Locator:
        if not inside.count():
            raise JourneyStuck(f"an expected field is missing on {self.page.url}")
        return inside.first.locator("xpath=ancestor::form[1]")

    def _problem(self) -> str:
        summary = self.page.locator(".error-summary, #input-error, .alert-error, .pf-m-danger")
        if summary.count() and summary.first.is_visible():
            return re.sub(r"\s+", " ", summary.first.inner_text()).strip()
        return ""
