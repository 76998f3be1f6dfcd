"""A browser without a browser, for benchmarks: cookies, redirects followed one by one
(each counted), forms read from the page (action, hidden fields, CSRF tokens, the button
pressed), and a page's meta refresh followed. No JavaScript, no images or styles: what is
counted is the navigations a student's browser makes.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin

import requests

TIMEOUT = 120
_REFRESH = re.compile(
    r'<meta[^>]*http-equiv="refresh"[^>]*content="\d+;\s*url=([^"]+)"', re.IGNORECASE
)


class BrowserError(RuntimeError):
    """The page was not what the journey expected; the message says where."""


@dataclass
class Form:
    action: str  # absolute
    method: str
    fields: list[tuple[str, str]]  # what the browser sends as the form stands
    buttons: list[tuple[str, str]]  # named submit buttons: (name, value)
    names: set[str] = field(default_factory=set)  # every control's name

    def has(self, name: str) -> bool:
        return name in self.names


class _FormParser(HTMLParser):
    def __init__(self, base: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base = base
        self.forms: list[Form] = []
        self._current: Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            action = urljoin(self.base, html.unescape(a.get("action", "")) or self.base)
            self._current = Form(action, a.get("method", "get").lower(), [], [])
            self.forms.append(self._current)
            return
        form = self._current
        if form is None or not a.get("name"):
            return
        name = a["name"]
        form.names.add(name)
        kind = a.get("type", "submit" if tag == "button" else "text").lower()
        if tag == "button" or kind == "submit":
            form.buttons.append((name, a.get("value", "")))
        elif kind in ("checkbox", "radio"):
            if "checked" in a:
                form.fields.append((name, a.get("value", "on")))
        elif tag in ("input", "select", "textarea"):
            form.fields.append((name, a.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


@dataclass
class Page:
    url: str
    status: int
    text: str

    def forms(self) -> list[Form]:
        parser = _FormParser(self.url)
        parser.feed(self.text)
        return [f for f in parser.forms if f.method == "post"]

    def form_with(self, name: str) -> Form:
        for form in self.forms():
            if form.has(name):
                return form
        raise BrowserError(f"no form with {name!r} at {self.url} (HTTP {self.status})")

    def refresh_url(self) -> str | None:
        found = _REFRESH.search(self.text)
        return urljoin(self.url, html.unescape(found.group(1))) if found else None


class Browser:
    """One student's browser. `stop_at`: a URL prefix (the app's redirect URI) that is
    never fetched: reaching it ends the journey, its address kept in `arrived`."""

    def __init__(self, stop_at: str) -> None:
        self.session = requests.Session()
        self.stop_at = stop_at
        self.visited: list[tuple[str, str, int]] = []  # method, URL, status
        self.arrived: str | None = None

    @property
    def requests(self) -> int:
        return len(self.visited)

    def get(self, url: str) -> Page:
        return self._go("GET", url, None)

    def submit(
        self, page: Page, form: Form, data: dict[str, str], button: str | None = None
    ) -> Page:
        """Post `form` as a browser would: its fields as they stand, `data` typed over
        them, and the button pressed (by name) if any."""
        sent = dict(form.fields)
        sent.update(data)
        if button is not None:
            value = dict(form.buttons).get(button)
            if value is None:
                raise BrowserError(f"no button {button!r} at {page.url}")
            sent[button] = value
        return self._go("POST", form.action, sent)

    def follow_refresh(self, page: Page) -> Page:
        url = page.refresh_url()
        if url is None:
            raise BrowserError(f"{page.url} does not move on (HTTP {page.status})")
        return self.get(url)

    def _go(self, method: str, url: str, data: dict[str, str] | None) -> Page:
        while True:
            if url.startswith(self.stop_at):
                self.arrived = url
                return Page(url, 0, "")
            response = self.session.request(
                method, url, data=data, allow_redirects=False, timeout=TIMEOUT
            )
            self.visited.append((method, url, response.status_code))
            # Keycloak marks its cookies Secure even on plain-HTTP loopback; a browser
            # treats 127.0.0.1 as a secure context and sends them, requests does not.
            for cookie in self.session.cookies:
                cookie.secure = False
            if response.status_code in (301, 302, 303, 307, 308):
                url = urljoin(url, response.headers["Location"])
                if response.status_code in (301, 302, 303):
                    method, data = "GET", None
                continue
            return Page(url, response.status_code, response.text)
