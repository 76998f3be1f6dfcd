"""A student walking the activation flow over HTTPS the way a browser does: each step's
page read for its CSRF token, the form posted with the page's `Origin`, cookies kept.

Used by the topology tests and `scripts/bench load`. `source` binds the client socket to
another loopback address (127.0.0.0/8 all reaches this machine), so that nginx sees, and
forwards, a different client address per student.
"""

from __future__ import annotations

import json
import mailbox
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

_CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
_CHECKBOX = re.compile(r'name="(accept_[a-z0-9_]+)"')
_CODE = re.compile(r"\b(\d{6})\b")
TIMEOUT = 120.0


class StepFailed(Exception):
    """A step did not answer as a working flow would; `status` is what it answered."""

    def __init__(self, step: str, status: int, body: str = "") -> None:
        super().__init__(f"{step}: HTTP {status}")
        self.step = step
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Student:
    user_id: str
    code: str
    date_of_birth: date
    id_last4: str
    email: str
    phone: str


class _SourceAddressAdapter(HTTPAdapter):
    def __init__(self, source: str) -> None:
        self._source = source
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self._source, 0)
        super().init_poolmanager(*args, **kwargs)


def https_session(ca_file: Path | str, source: str | None = None) -> requests.Session:
    session = requests.Session()
    session.verify = str(ca_file)
    session.trust_env = False  # no proxy variables, no other CA bundle: exactly this CA
    if source:
        adapter = _SourceAddressAdapter(source)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
    return session


@dataclass
class CodeReader:
    """One-time codes as the stack delivered them: email to a Maildir, texts to a log."""

    maildir: Path
    sms_log: Path

    def email_code(self, address: str, *, after: int = 0) -> str:
        return self._wait(lambda: self._emails(address)[after:], f"email to {address}")

    def sms_code(self, number: str, *, after: int = 0) -> str:
        return self._wait(lambda: self._texts(number)[after:], f"text to {number}")

    def count(self, channel: str, to: str) -> int:
        return len(self._emails(to) if channel == "email" else self._texts(to))

    def _emails(self, address: str) -> list[str]:
        if not self.maildir.exists():
            return []
        found = []
        for message in mailbox.Maildir(self.maildir, create=False):
            if address in (message.get("To") or ""):
                for part in message.walk():
                    if part.get_content_type() == "text/plain":
                        found.append(part.get_payload(decode=True).decode())
        return found

    def _texts(self, number: str) -> list[str]:
        if not self.sms_log.exists():
            return []
        found = []
        for line in self.sms_log.read_text().splitlines():
            body = json.loads(json.loads(line)["body"] or "{}")
            if body.get("to") == number:
                found.append(body.get("text", ""))
        return found

    @staticmethod
    def _wait(read: Callable[[], list[str]], what: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for text in read():
                match = _CODE.search(text)
                if match:
                    return match.group(1)
            time.sleep(0.1)
        raise AssertionError(f"no code arrived: {what}")


@dataclass
class StudentBrowser:
    base_url: str
    ca_file: Path | str
    source: str | None = None
    codes: CodeReader | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.session = https_session(self.ca_file, self.source)

    # -- one request --------------------------------------------------------------------

    def get(self, step: str) -> requests.Response:
        return self.session.get(f"{self.base_url}/activate/{step}", timeout=TIMEOUT)

    def post(self, path: str, data: dict[str, str], **headers: str) -> requests.Response:
        page_origin = {"Origin": self.base_url, **headers}
        return self.session.post(
            f"{self.base_url}{path}",
            data=data,
            headers=page_origin,
            allow_redirects=False,
            timeout=TIMEOUT,
        )

    def submit(
        self, step: str, data: dict[str, str], *, expect: int | tuple[int, ...] = 302
    ) -> requests.Response:
        """GET the step's page, POST its form; `StepFailed` unless the answer is `expect`."""
        started = time.perf_counter()
        page = self.get(step)
        token = _CSRF.search(page.text)
        if page.status_code != 200 or not token:
            raise StepFailed(step, page.status_code, page.text[:400])
        answer = self.post(f"/activate/{step}", {"csrf_token": token.group(1), **data})
        if answer.status_code not in (expect if isinstance(expect, tuple) else (expect,)):
            raise StepFailed(step, answer.status_code, answer.text[:400])
        self.timings[step] = self.timings.get(step, 0.0) + time.perf_counter() - started
        return answer

    # -- the steps ----------------------------------------------------------------------

    def identify(self, who: Student, *, expect: int = 302) -> requests.Response:
        return self.submit(
            "identify",
            {
                "user_id": who.user_id,
                "activation_code": who.code,
                # The date as three boxes, day / month / year (provider/date_input.py).
                "date_of_birth-day": str(who.date_of_birth.day),
                "date_of_birth-month": str(who.date_of_birth.month),
                "date_of_birth-year": str(who.date_of_birth.year),
                "id_last4": who.id_last4,
            },
            expect=expect,
        )

    def accept_policies(self) -> requests.Response:
        page = self.get("policies")
        boxes = set(_CHECKBOX.findall(page.text))
        if not boxes:
            raise StepFailed("policies", page.status_code, page.text[:400])
        return self.submit("policies", {box: "y" for box in boxes})

    def confirm_contacts(self, who: Student) -> requests.Response:
        """Keep both contacts on record and prove each with its code (a kept contact needs
        none unless the university says so, but recovery needs proven ones)."""
        choose = {"action": "send-email", "email_choice": "keep", "phone_choice": "keep"}
        before = self.codes.count("email", who.email) if self.codes else 0
        answer = self.submit("contacts", choose, expect=(200, 302))
        if answer.status_code == 302:
            return answer  # both proven before
        if self.codes is None:
            raise StepFailed("contacts", answer.status_code, "codes asked, no CodeReader")
        for channel, to in (("email", who.email), ("phone", who.phone)):
            if channel != "email":
                if f'value="send-{channel}"' not in answer.text:
                    continue  # proven before
                before = self.codes.count(channel, to)
                self.submit("contacts", {"action": f"send-{channel}"}, expect=200)
            elif 'name="code_email"' not in answer.text:
                continue  # proven before: no code went
            code = (
                self.codes.email_code(to, after=before)
                if channel == "email"
                else self.codes.sms_code(to, after=before)
            )
            answer = self.submit(
                "contacts", {"action": f"verify-{channel}", f"code_{channel}": code}, expect=200
            )
        return self.submit("contacts", {"action": "continue"})

    def set_password(self, password: str) -> requests.Response:
        return self.submit("password", {"password": password, "confirm": password})

    def activate(self, who: Student, password: str) -> None:
        """The whole flow, identify to done."""
        self.identify(who)
        self.accept_policies()
        self.confirm_contacts(who)
        self.set_password(password)
