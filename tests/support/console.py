"""The help-desk console without a browser: a staff member signed in through the realm's
real login pages (requests), and the tables of its pages read back as text.

For tests about what the console says; what it looks like is for tests/browser."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

import requests

from tests.support.keycloak_login import post_login_form
from tests.support.staff import STAFF_PASSWORD

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Console:
    def __init__(self, live_url: str, username: str) -> None:
        self.base = live_url
        self.session = requests.Session()
        login = self.session.get(f"{live_url}/helpdesk/login", timeout=30)  # to Keycloak
        self._plain_cookies()
        answer = post_login_form(self.session, login.text, {"username": username})
        self._plain_cookies()
        answer = post_login_form(
            self.session, answer.text, {"password": STAFF_PASSWORD, "credentialId": ""}
        )
        callback = answer.headers.get("Location", "")
        assert callback.startswith(f"{live_url}/helpdesk/callback"), answer.text[:500]
        self.session.get(callback, timeout=30).raise_for_status()

    def _plain_cookies(self) -> None:
        # Keycloak marks its cookies Secure even on plain-HTTP loopback (see keycloak_login).
        for cookie in self.session.cookies:
            cookie.secure = False

    def get(self, path: str) -> requests.Response:
        answer = self.session.get(self.base + path, timeout=30, allow_redirects=False)
        assert answer.status_code == 200, (path, answer.status_code)
        return answer

    def post(
        self, path: str, form_page: str, *, follow: bool = True, **form: str
    ) -> requests.Response:
        """POST `form` to `path` with the CSRF token of the console page `form_page`."""
        token = _CSRF.search(self.get(form_page).text)
        assert token, "no form on " + form_page
        return self.session.post(
            self.base + path,
            data={"csrf_token": token.group(1), **form},
            timeout=30,
            allow_redirects=follow,
        )


@dataclass
class Row:
    attrs: dict[str, str]
    cells: list[str] = field(default_factory=list)


class _Tables(HTMLParser):
    """The rows of the <table> whose id or class is `name`: attributes and cell texts."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.inside = False
        self.head = False
        self.rows: list[Row] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = {k: v or "" for k, v in attrs}
        if tag == "table":
            self.inside = self.name in (named.get("id"), *named.get("class", "").split())
        elif tag == "thead":
            self.head = True
        elif self.inside and tag == "tr" and not self.head:
            self.rows.append(Row(named))
        elif self.inside and tag in ("td", "th") and self.rows and not self.head:
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.inside = False
        elif tag == "thead":
            self.head = False
        elif tag in ("td", "th") and self.cell is not None:
            self.rows[-1].cells.append(" ".join("".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def table_rows(page: str, name: str) -> list[Row]:
    """The body rows of the table called `name` (its id or a class)."""
    parser = _Tables(name)
    parser.feed(page)
    return parser.rows
