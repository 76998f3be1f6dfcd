"""The recovery flow over real HTTP (the app served by werkzeug, driven by `requests`), a
browser of its own per instance, and its answers blanked of what differs per request
(CSRF tokens, nonces, dates, cookie values), so two answers can be compared whole."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import requests

from provider.recovery.flow import COOKIE

_CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
# Every CSRF field, in either attribute order the templates write.
_CSRF_FIELDS = re.compile(r'(<input [^>]*name="csrf_token"[^>]*value=")[^"]*"')
# What the student typed, echoed back into the form.
_TYPED_FIELDS = re.compile(r'(<input [^>]*name="(?:account|code)"[^>]*value=")[^"]*"')


@dataclass(frozen=True)
class Answer:
    status: int
    location: str | None
    headers: list[tuple[str, str]]  # in the order sent, repeated ones kept, blanked
    cookies_set: list[str]  # names in the answer's Set-Cookie headers
    body: str  # blanked
    seconds: float  # from the request to the whole answer

    def same_as(self, other: Answer) -> list[str]:
        """The fields in which two answers differ (their timing aside)."""
        fields = ("status", "location", "cookies_set", "headers", "body")
        return [f for f in fields if getattr(self, f) != getattr(other, f)]


def blank_body(body: str) -> str:
    body = _CSRF_FIELDS.sub(r'\1-"', body)
    body = _TYPED_FIELDS.sub(r'\1-"', body)
    return re.sub(r'nonce="[^"]*"', 'nonce="-"', body)


def blank_header(name: str, value: str) -> tuple[str, str]:
    """A response header with what differs on every answer blanked (its date, length, the
    CSP nonce, a cookie's value and expiry): for comparing answers side by side."""
    lowered = name.lower()
    if lowered in ("date", "content-length"):
        return name, "-"
    if lowered.startswith("content-security-policy"):
        return name, re.sub(r"'nonce-[^']*'", "'nonce-'", value)
    if lowered == "set-cookie":
        cookie, _, attributes = value.partition(";")
        attributes = re.sub(r"(?i)expires=[^;]*", "Expires=-", attributes)
        return name, f"{cookie.split('=', 1)[0]}=-;{attributes}"
    return name, value


def _answer(response: requests.Response, seconds: float) -> Answer:
    raw = list(response.raw.headers.items())
    return Answer(
        status=response.status_code,
        location=response.headers.get("Location"),
        headers=[blank_header(k, v) for k, v in raw],
        cookies_set=sorted(v.split("=", 1)[0] for k, v in raw if k.lower() == "set-cookie"),
        body=blank_body(response.text),
        seconds=seconds,
    )


class RecoveryBrowser:
    """One browser: its own cookies, the token of the last page it read."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = requests.Session()
        self.token = ""

    def close(self) -> None:
        self.http.close()

    def get(self, path: str) -> Answer:
        """A page of the flow (`path` under /recover/, or a Location it was sent to)."""
        if path.startswith("http"):
            url = path
        elif path.startswith("/"):
            url = self.base + path
        else:
            url = f"{self.base}/recover/{path}"
        started = time.monotonic()
        response = self.http.get(url, allow_redirects=False, timeout=30)
        took = time.monotonic() - started
        token = _CSRF.search(response.text)
        if token:
            self.token = token.group(1)
        return _answer(response, took)

    def post(self, step: str, data: dict[str, str]) -> Answer:
        started = time.monotonic()
        response = self.http.post(
            f"{self.base}/recover/{step}",
            data={"csrf_token": self.token, **data},
            headers={"Origin": self.base},
            allow_redirects=False,
            timeout=30,
        )
        took = time.monotonic() - started
        token = _CSRF.search(response.text)
        if token:
            self.token = token.group(1)
        return _answer(response, took)

    def start(self, account: str, channel: str) -> Answer:
        """The start page read (not timed), then the form posted (timed)."""
        page = self.get("start")
        assert page.status == 200 and self.token, page.body[:300]
        return self.post("start", {"account": account, "channel": channel})

    def follow(self, answer: Answer) -> Answer:
        assert answer.location, f"not a redirect: {answer.status}"
        return self.get(answer.location)

    def resend(self) -> Answer:
        return self.post("code", {"action": "resend"})

    def code(self, code: str) -> Answer:
        return self.post("code", {"action": "verify", "code": code})

    @property
    def flow_id(self) -> str | None:
        return self.http.cookies.get(COOKIE)
