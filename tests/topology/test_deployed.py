"""The service as a university deploys it, and the faults it must survive.

Every request goes through nginx over HTTPS to any of the two replicas (no sticky
sessions). After every fault an account is either untouched (pending, no password, code
unused) or fully done (active, password, code used): never anything in between.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import time
from collections.abc import Callable
from datetime import date

import pytest
import requests
from devstack.stack import Stack
from devstack.student_walk import Student, StudentBrowser, https_session

from provider.date_input import form_fields
from tests.support.keycloak_login import post_login_form
from tests.support.realm_changes import RealmChanges
from tests.support.staff import STAFF_PASSWORD
from tests.topology.conftest import Accounts

PASSWORD = "harbour lantern {} orbit"
UNAVAILABLE = "Sorry, we cannot activate accounts right now"
_CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')

pytestmark = pytest.mark.topology


def served_by(stack: Stack, source: str) -> set[str]:
    """The upstream replicas nginx sent this client address's requests to."""
    log = (stack.nginx.logs / "nginx-access.log").read_text().splitlines()
    upstreams: set[str] = set()
    for line in log:
        if line.startswith(source + " "):
            upstreams.update(re.findall(r"127\.0\.0\.1:(\d+)", line.split("upstream=", 1)[1]))
    return upstreams


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)  # ok: a poll interval under the deadline above


# -- HTTPS end to end -------------------------------------------------------------------


def test_every_step_posts_over_https_and_any_replica_serves_any_request(
    stack: Stack,
    enrol: Callable[[], Student],
    browser_for: Callable[[], StudentBrowser],
    accounts: Accounts,
) -> None:
    who, student = enrol(), browser_for()
    student.activate(who, PASSWORD.format(1))  # identify, policies, contacts + codes, password
    accounts.assert_activated(who)
    replica_ports = {str(r.port) for r in stack.replicas}
    assert served_by(stack, student.source or "") == replica_ports  # both, round-robin
    done = student.get("done")
    assert done.status_code == 200
    assert done.url.startswith("https://")
    hsts = done.headers["Strict-Transport-Security"]
    assert hsts.startswith("max-age=") and "," not in hsts  # one header, not two
    assert all(c.secure for c in student.session.cookies)
    # The language switch (a link) and a page in the chosen language, over HTTPS.
    chosen = student.session.get(f"{stack.service_url}/language/pt", timeout=30)
    assert chosen.status_code == 200 and 'lang="pt"' in chosen.text


def test_a_post_from_another_origin_is_refused_through_the_proxy(
    stack: Stack, browser_for: Callable[[], StudentBrowser]
) -> None:
    student = browser_for()
    token = _CSRF.search(student.get("identify").text)
    assert token
    for headers in ({"Origin": "https://evil.example"}, {"Origin": ""}):
        answer = student.post("/activate/restart", {"csrf_token": token.group(1)}, **headers)
        assert answer.status_code == 400
        assert "came from somewhere else" in answer.text
    ok = student.post("/activate/restart", {"csrf_token": token.group(1)})
    assert ok.status_code == 302


def test_plain_http_is_not_offered_to_browsers(stack: Stack) -> None:
    plain = requests.get(
        stack.service_url.replace("https://", "http://") + "/activate/",
        timeout=5,
        allow_redirects=False,
    )
    # nginx refuses plain HTTP on its TLS port (or sends the browser to https://); the
    # service itself never answers unencrypted: no page, no cookie.
    assert plain.status_code in (400, 301, 308)
    assert "Set-Cookie" not in plain.headers
    assert "csrf_token" not in plain.text
    if plain.is_redirect:
        assert plain.headers["Location"].startswith("https://")
    system_roots_only = requests.Session()
    system_roots_only.trust_env = False  # not REQUESTS_CA_BUNDLE, which trusts the stack's CA
    with pytest.raises(requests.exceptions.SSLError):
        system_roots_only.get(stack.service_url + "/healthz", timeout=5)


def test_the_proxy_logs_paths_never_query_strings(stack: Stack) -> None:
    """A query string may carry the policy gate's ticket, a Keycloak session code or a
    user ID (`login_hint`): the access log keeps the path only."""
    marker = secrets.token_hex(8)
    answer = requests.get(
        f"{stack.service_url}/policies/review", params={"ticket": marker}, timeout=10
    )
    assert answer.status_code == 400  # not a ticket: refused (after leaving the URL)
    log = (stack.nginx.logs / "nginx-access.log").read_text()
    assert '"GET /policies/review"' in log
    assert marker not in log


# -- limits: the forwarded address, one budget across replicas --------------------------


def _identify_attempt(student: StudentBrowser, **headers: str) -> int:
    page = student.get("identify")
    token = _CSRF.search(page.text)
    assert token, page.status_code
    return student.post(
        "/activate/identify",
        {
            "csrf_token": token.group(1),
            "user_id": f"n{secrets.token_hex(3)}",  # unknown IDs: no per-ID lockout in play
            "activation_code": "WRONG-CODE",
            **form_fields(date(2006, 1, 1)),
            "id_last4": "0000",
        },
        **headers,
    ).status_code


def test_identify_limit_counts_the_forwarded_address_once_across_replicas(
    stack: Stack, browser_for: Callable[[], StudentBrowser]
) -> None:
    allowed = int(stack.env.get("UMPASS_IDENTIFY_LIMIT", "10 per minute").split()[0])
    lab, other = browser_for(), browser_for()
    # Each attempt claims to come from somewhere else: the header a client writes itself
    # is not believed, and the attempts alternate between the two replicas.
    statuses = [
        _identify_attempt(lab, **{"X-Forwarded-For": f"198.51.100.{n}"}) for n in range(allowed + 1)
    ]
    assert 429 not in statuses[:allowed], statuses
    assert statuses[allowed] == 429, statuses
    assert len(served_by(stack, lab.source or "")) == 2  # both replicas, one budget
    assert _identify_attempt(other) != 429  # another address has its own budget


# -- faults -----------------------------------------------------------------------------


def test_a_replica_killed_mid_flow_and_the_student_finishes_on_the_other(
    stack: Stack,
    enrol: Callable[[], Student],
    browser_for: Callable[[], StudentBrowser],
    accounts: Accounts,
) -> None:
    who, student = enrol(), browser_for()
    student.identify(who)
    student.accept_policies()
    stack.replicas[0].kill()
    try:
        student.confirm_contacts(who)
        student.set_password(PASSWORD.format(2))
        accounts.assert_activated(who)
    finally:
        stack.replicas[0].start()


def test_redis_down_fails_closed_with_a_calm_page_then_recovers(
    stack: Stack,
    enrol: Callable[[], Student],
    browser_for: Callable[[], StudentBrowser],
    accounts: Accounts,
) -> None:
    who, student = enrol(), browser_for()
    stack.redis.stop()
    try:
        refused = student.identify(who, expect=503)  # a limited action, not counted: refused
        assert UNAVAILABLE in refused.text
        ready = student.session.get(f"{stack.service_url}/readyz", timeout=30)
        assert ready.status_code == 503
        assert ready.json()["checks"]["rate_limits"] == "unavailable"
        accounts.assert_untouched(who)
    finally:
        stack.redis.start()
    student.activate(who, PASSWORD.format(3))
    accounts.assert_activated(who)


def test_postgresql_restarted_mid_flow_gives_a_calm_page_then_the_student_finishes(
    stack: Stack,
    enrol: Callable[[], Student],
    browser_for: Callable[[], StudentBrowser],
    accounts: Accounts,
) -> None:
    who, student = enrol(), browser_for()
    student.identify(who)
    student.accept_policies()
    stack.postgres.stop()
    try:
        down = student.get("contacts")
        assert down.status_code == 503
        assert UNAVAILABLE in down.text
    finally:
        stack.postgres.start()
    wait_until(
        lambda: stack_session(stack).get(f"{stack.service_url}/readyz", timeout=30).ok,
        "the replicas and Keycloak to see PostgreSQL again",
    )
    accounts.assert_untouched(who)
    student.confirm_contacts(who)
    student.set_password(PASSWORD.format(4))
    accounts.assert_activated(who)


def stack_session(stack: Stack) -> requests.Session:
    return https_session(stack.ca_file)


def test_a_keycloak_node_killed_mid_flow_and_the_flow_finishes_on_the_other(
    stack: Stack,
    enrol: Callable[[], Student],
    browser_for: Callable[[], StudentBrowser],
    accounts: Accounts,
) -> None:
    assert stack.cluster_formed()
    who, student = enrol(), browser_for()
    student.identify(who)
    stack.keycloak_nodes[0].kill()
    try:
        student.accept_policies()
        student.confirm_contacts(who)
        student.set_password(PASSWORD.format(5))
        accounts.assert_activated(who)
    finally:
        stack.keycloak_nodes[0].start()
    wait_until(stack.cluster_formed, "node 1 to rejoin the cluster", timeout=120)


# -- the help-desk console, signed in through Keycloak, over HTTPS -----------------------


def test_help_desk_console_signs_in_and_posts_over_https(
    stack: Stack,
    enrol: Callable[[], Student],
    browser_for: Callable[[], StudentBrowser],
    accounts: Accounts,
    stack_changes: RealmChanges,
) -> None:
    staff = stack_changes.add_staff("activation-helpdesk")
    who = enrol()
    desk = browser_for()
    login = desk.session.get(f"{stack.service_url}/helpdesk/login", timeout=60)
    assert login.url.startswith(stack.keycloak_url + "/")  # Keycloak's page, through nginx
    answer = post_login_form(desk.session, login.text, {"username": staff.username})
    answer = post_login_form(
        desk.session, answer.text, {"password": STAFF_PASSWORD, "credentialId": ""}
    )
    assert answer.headers["Location"].startswith(f"{stack.service_url}/helpdesk/callback")
    desk.session.get(answer.headers["Location"], timeout=60).raise_for_status()

    page = desk.session.get(f"{stack.service_url}/helpdesk/students/{who.user_id}", timeout=60)
    assert page.status_code == 200
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)  # the console's forms
    assert token
    code_form = f"/helpdesk/students/{who.user_id}/code"
    asked = desk.post(code_form, {"csrf_token": token.group(1)})
    assert asked.status_code == 200  # the question first: nothing issued yet
    accounts.assert_untouched(who)
    confirmed = desk.post(code_form, {"csrf_token": token.group(1), "confirm": "yes"})
    assert confirmed.status_code == 303
    issued = desk.session.get(
        f"{stack.service_url}{confirmed.headers['Location']}"
        if confirmed.headers["Location"].startswith("/")
        else confirmed.headers["Location"],
        timeout=60,
    )
    assert issued.status_code == 200
    new_code = re.search(r'<p class="code">([^<]+)</p>', issued.text)
    assert new_code
    accounts.assert_untouched(who)

    # The old code is dead, the new one works: the student activates with it.
    student = browser_for()
    student.identify(who, expect=400)  # the generic "could not match" page
    student.activate(dataclasses.replace(who, code=new_code.group(1)), PASSWORD.format(6))
    accounts.assert_activated(who)
