"""No form answers a 5xx, whatever is posted to it (Hypothesis).

Every route that takes a post (the activation's and recovery's steps, their "start
again", strength meters and sign-in buttons, the help desk's actions) gets arbitrary
posts: field names its page uses and any others, values plausible for it and any text,
bytes that are not UTF-8, files, huge values, fields repeated, any content type. Each
post carries the page's CSRF token (in the header, and in the body as the draw falls) and
a live flow or staff session, so it reaches the form handling and not only the CSRF
refusal. A 400 is always one of our pages, never a bare error. The draws are
derandomized: the same examples every run. The same through the service's real server
(gunicorn, as deployed) for identify and contacts: test_forms_over_real_http below.

The cases named one by one (identify, contacts): tests/flows/test_malformed_posts.py.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings

from provider import create_app
from provider.config import Settings
from provider.flows.engine import FLOW_COOKIE
from provider.keycloak import KeycloakGateway
from provider.services import Services
from tests.support.console import Console
from tests.support.flow_at import StepClient, put_flow_at
from tests.support.flow_client import StudentDetails
from tests.support.inbox import Inbox
from tests.support.malformed import ArbitraryPost, arbitrary_posts, malformed_posts
from tests.support.realm_changes import RealmChanges
from tests.support.recovery import RecoveryClient, activate_student, put_recovery_at
from tests.support.replicas import Replica, start_replica
from tests.support.students import enrol_student

pytestmark = pytest.mark.keycloak

FUZZ = settings(
    max_examples=50,
    deadline=None,
    derandomize=True,  # the same draws every run: CI cannot go red by luck
    database=None,  # nothing remembered between runs either
    suppress_health_check=list(HealthCheck),
)
# Values a form of ours might take (actions, choices, dates, codes), beside any text.
PLAUSIBLE = [
    "",
    "y",
    "keep",
    "change",
    "choose",
    "send-email",
    "send-phone",
    "verify-email",
    "verify-phone",
    "continue",
    "resend",
    "verify",
    "unlock",
    "password",
    "email",
    "phone",
    "2007-03-14",
    "2007-02-30",
    "123456",
    "+853 6612 3456",
    "someone@gmail.com",
    "orbit lantern velvet 1987",
]
_NAME = re.compile(r'name="([^"]+)"')
_NOT_FIELDS = {"viewport", "csrf_token"}


class Browser(Protocol):
    client: FlaskClient
    token: str


@dataclasses.dataclass(frozen=True)
class Target:
    """One route that takes a post: `arrange` gives a browser whose next post reaches
    the form handling there (again after a draw that moved the flow on, when `fresh`);
    `page` holds the form (its field names)."""

    path: str
    page: str
    arrange: Callable[[], Browser]
    fresh: bool = True


class Students:
    """Pending students for flows put at a step, a new one when a draw used one up."""

    def __init__(self, app: Flask, inbox: Inbox, services: Services) -> None:
        self.app, self.inbox, self.services = app, inbox, services
        self.current = enrol_student(services, "f")

    def at(self, step: str) -> StepClient:
        try:
            return put_flow_at(self.app, self.inbox, step, self.current)
        except Exception:  # a draw activated the account (a valid password): a new one
            self.current = enrol_student(self.services, "f")
            return put_flow_at(self.app, self.inbox, step, self.current)


def _verifying(students: Students) -> StepClient:
    """At contacts, a new email chosen: the page of "Send code" and "Verify" (kept
    contacts alone need no code and would move on to the password step)."""
    browser = students.at("contacts")
    chosen = browser.submit(
        "contacts",
        {
            "action": "choose",
            "email_choice": "change",
            "new_email": "fuzz.new@example.edu",
            "phone_choice": "keep",
        },
    )
    assert chosen.status_code == 200, chosen.status_code
    return browser


def _names(page: str) -> list[str]:
    return sorted(set(_NAME.findall(page)) - _NOT_FIELDS) or ["action"]


def _fuzz(target: Target) -> None:
    first = target.arrange()
    page = first.client.get(target.page)
    assert page.status_code == 200, (target.page, page.status_code)
    names = _names(page.get_data(as_text=True))

    held = [first]

    @FUZZ
    @given(post=arbitrary_posts(names, PLAUSIBLE))
    def no_5xx(post: ArbitraryPost) -> None:
        browser = held[-1]
        body, content_type = post.body(browser.token)
        answer = browser.client.post(
            target.path,
            data=body,
            content_type=content_type,
            headers={"X-CSRFToken": browser.token},
        )
        assert answer.status_code < 500, (answer.status_code, post)
        if answer.status_code in (400, 413):
            assert b'class="site-header"' in answer.data, "a bare error, not our page"
        if target.fresh and answer.status_code in (302, 303):
            held.append(target.arrange())  # the post moved the flow on: back to the form

    no_5xx()


@pytest.fixture(scope="module")
def students(app: Flask, inbox: Inbox, services: Services) -> Students:
    return Students(app, inbox, services)


@pytest.fixture(scope="module")
def active(app: Flask, inbox: Inbox, services: Services) -> StudentDetails:
    who = enrol_student(services, "g")
    activate_student(app, inbox, who)
    return who


ACTIVATION = {
    "identify": lambda app, students: Target(
        "/activate/identify", "/activate/identify", lambda: StepClient(app, None)
    ),
    "policies": lambda app, students: Target(
        "/activate/policies", "/activate/policies", lambda: students.at("policies")
    ),
    "contacts (choose)": lambda app, students: Target(
        "/activate/contacts", "/activate/contacts", lambda: students.at("contacts")
    ),
    "contacts (verify)": lambda app, students: Target(
        "/activate/contacts", "/activate/contacts", lambda: _verifying(students)
    ),
    "password": lambda app, students: Target(
        "/activate/password", "/activate/password", lambda: students.at("password")
    ),
    "password strength": lambda app, students: Target(
        "/activate/password/strength", "/activate/password", lambda: students.at("password")
    ),
    "start again": lambda app, students: Target(
        "/activate/restart", "/activate/contacts", lambda: students.at("contacts")
    ),
    "sign-in: keep": lambda app, students: Target(
        "/activate/sign-in/keep", "/activate/contacts", lambda: students.at("contacts")
    ),
    "sign-in: switch": lambda app, students: Target(
        "/activate/sign-in/switch", "/activate/contacts", lambda: students.at("contacts")
    ),
    "sign-in: cancel": lambda app, students: Target(
        "/activate/cancel", "/activate/contacts", lambda: students.at("contacts")
    ),
}


@pytest.mark.parametrize("form", list(ACTIVATION))
def test_no_activation_form_answers_5xx(app: Flask, students: Students, form: str) -> None:
    _fuzz(ACTIVATION[form](app, students))


def test_the_done_page_answers_no_5xx(app: Flask, inbox: Inbox, services: Services) -> None:
    who = enrol_student(services, "d")
    at_done = put_flow_at(app, inbox, "done", who)
    _fuzz(Target("/activate/done", "/activate/done", lambda: at_done, fresh=False))


def _recovery_targets(app: Flask, inbox: Inbox, who: StudentDetails) -> dict[str, Target]:
    def at(step: str) -> Callable[[], RecoveryClient]:
        return lambda: put_recovery_at(app, inbox, step, who)

    return {
        "start": Target("/recover/start", "/recover/start", lambda: RecoveryClient(app)),
        "code": Target("/recover/code", "/recover/code", at("code")),
        "choose": Target("/recover/choose", "/recover/choose", at("choose")),
        "new password": Target(
            "/recover/new-password", "/recover/new-password", at("new-password")
        ),
        "new password strength": Target(
            "/recover/new-password/strength", "/recover/new-password", at("new-password")
        ),
        "finished": Target("/recover/finished", "/recover/finished", at("finished")),
        "start again": Target("/recover/restart", "/recover/code", at("code")),
    }


@pytest.mark.parametrize(
    "form",
    ["start", "code", "choose", "new password", "new password strength", "finished", "start again"],
)
def test_no_recovery_form_answers_5xx(
    app: Flask,
    inbox: Inbox,
    active: StudentDetails,
    form: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Budgets with room for every draw: a 429 would stop the draws short of the form.
    monkeypatch.setitem(app.config, "UMPASS_RECOVERY_ACCOUNT_LIMIT", "100000 per hour")
    monkeypatch.setitem(app.config, "UMPASS_RECOVERY_CONTACT_LIMIT", "100000 per hour")
    _fuzz(_recovery_targets(app, inbox, active)[form])


@pytest.fixture(scope="module")
def asking_app(settings: Settings, gateway: KeycloakGateway) -> Flask:
    """The service where recovery asks for the date of birth too."""
    return create_app(dataclasses.replace(settings, recovery_asks_birth_date=True), gateway=gateway)


def test_the_birth_date_form_answers_no_5xx(
    asking_app: Flask, inbox: Inbox, active: StudentDetails
) -> None:
    _fuzz(
        Target(
            "/recover/birth-date",
            "/recover/birth-date",
            lambda: put_recovery_at(asking_app, inbox, "birth-date", active),
        )
    )


# -- the help desk ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def console_admin(module_staff: RealmChanges) -> str:
    return module_staff.add_staff("activation-admin").username


@dataclasses.dataclass
class StaffBrowser:
    """The test client holding a staff member's console session (signed in for real
    through the realm on the live server, which serves this same app)."""

    client: FlaskClient
    token: str


def _staff_browser(app: Flask, live_url: str, username: str, page: str) -> StaffBrowser:
    console = Console(live_url, username)
    client = app.test_client()
    for cookie in console.session.cookies:
        if cookie.name == "umpass_session":
            client.set_cookie(cookie.name, cookie.value or "", path=cookie.path or "/")
    shown = client.get(page)
    assert shown.status_code == 200, shown.status_code
    token = re.search(r'name="csrf_token" value="([^"]+)"', shown.get_data(as_text=True))
    assert token, "no form on " + page
    return StaffBrowser(client, token.group(1))


@pytest.mark.parametrize("action", ["code", "unlock", "logout"])
def test_no_help_desk_form_answers_5xx(
    app: Flask,
    live_url: str,
    console_admin: str,
    services: Services,
    action: str,
) -> None:
    who = enrol_student(services, "h")
    page = f"/helpdesk/students/{who.user_id}"
    staff = _staff_browser(app, live_url, console_admin, page)
    path = "/helpdesk/logout" if action == "logout" else f"{page}/{action}"
    _fuzz(Target(path, page, lambda: staff, fresh=False))


# -- through the real server -------------------------------------------------------------


@pytest.fixture(scope="module")
def served(
    service_env: dict[str, str],
    settings: Settings,
    services: Services,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Replica]:
    """The service under gunicorn with the production settings (as `umpass serve` runs
    it), on the run's database and realm."""
    env = {**service_env, "UMPASS_SECRET_KEY": settings.secret_key}
    replica = start_replica("forms", env, Path(tmp_path_factory.mktemp("forms")), threads=4)
    try:
        replica.wait_ready()
        yield replica
    finally:
        replica.stop()


def _http_browser(base: str, flow_id: str | None, page: str) -> tuple[requests.Session, str]:
    session = requests.Session()
    if flow_id is not None:
        session.cookies.set(FLOW_COOKIE, flow_id, domain="127.0.0.1", path="/activate")
    shown = session.get(base + page, timeout=30, allow_redirects=False)
    assert shown.status_code == 200, shown.status_code
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', shown.text)
    assert token, "no form on " + page
    return session, token.group(1)


def test_forms_over_real_http(
    served: Replica, app: Flask, inbox: Inbox, students: Students
) -> None:
    """Identify and contacts through gunicorn: the named malformed posts answered 400 with
    the form again, and arbitrary ones no 5xx."""
    for step, fields, abused, arrange in (
        (
            "identify",
            {
                "user_id": "ab12345",
                "activation_code": "X",
                "date_of_birth-day": "",
                "date_of_birth-month": "",
                "date_of_birth-year": "",
                "id_last4": "1",
            },
            "activation_code",
            lambda: None,
        ),
        (
            "contacts",
            {"action": "choose", "email_choice": "keep", "new_email": "a@b.cd"},
            "new_email",
            lambda: students.at("contacts").flow_id,
        ),
    ):
        page = f"/activate/{step}"
        session, token = _http_browser(served.url, arrange(), page)
        for post in malformed_posts(fields, token, abused):
            kwargs: dict[str, Any] = {"headers": {"X-CSRFToken": token}, "timeout": 30}
            if post.data is not None:
                answer = session.post(
                    served.url + page,
                    files=[(k, _as_part(v)) for k, v in _flat(post.data)],
                    **kwargs,
                )
            else:
                if post.content_type is not None:
                    kwargs["headers"]["Content-Type"] = post.content_type
                answer = session.post(served.url + page, data=post.body, **kwargs)
            assert answer.status_code == 400, (step, post.name, answer.status_code)
            assert 'name="csrf_token"' in answer.text and f'name="{abused}"' in answer.text

        _fuzz_http(session, served.url + page, token)


def _fuzz_http(session: requests.Session, url: str, token: str) -> None:
    names = _names(session.get(url, timeout=30, allow_redirects=False).text)

    @FUZZ
    @given(post=arbitrary_posts(names, PLAUSIBLE))
    def no_5xx(post: ArbitraryPost) -> None:
        body, content_type = post.body(token)
        headers = {"X-CSRFToken": token}
        if content_type:
            headers["Content-Type"] = content_type
        answer = session.post(url, data=body, headers=headers, timeout=30, allow_redirects=False)
        assert answer.status_code < 500, (answer.status_code, post)

    no_5xx()


def _flat(data: Any) -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        for one in value if isinstance(value, list) else [value]:
            yield key, one


def _as_part(value: Any) -> Any:
    """A `requests` multipart part: a file as (filename, content), a field as (None, text)."""
    if hasattr(value, "stream"):
        return ("field.txt", value.stream.read())
    return (None, value)
