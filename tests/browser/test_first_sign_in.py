"""First sign-in in real Chromium against the real Keycloak: a pending student who signs
in to a campus app is sent through activation and comes back signed in as themselves.

Screenshots of every page go to artifacts/browser/first-sign-in/.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
import requests
from flask import Flask
from keycloak import KeycloakAdmin
from playwright.sync_api import Browser, BrowserContext, Page, expect

from provider.config import Settings
from provider.keycloak import ACCEPTED_POLICIES, ACTIVATION_STATE, BROKER_TICKET
from provider.oidc import handoff
from provider.oidc import server as oidc_server
from provider.oidc.server import Subject
from provider.services import Services
from tests.browser.sso import enter_password, enter_username
from tests.browser.test_activation_in_chromium import PASSWORD, prove_contacts
from tests.conftest import KeycloakUnderTest, RealmUnderTest
from tests.support.accounts import set_attributes
from tests.support.date_boxes import type_date_of_birth
from tests.support.flow_client import StudentDetails
from tests.support.inbox import Inbox
from tests.support.keycloak_login import authorization_request, demo_callback, sign_in
from tests.support.policies import accepted_now
from tests.support.realm_changes import RealmChanges
from tests.support.shots import Shots
from tests.support.students import enrol_student

BROKER_ENDPOINT = "/broker/umpass-activation/endpoint"
VIEWPORT = {"width": 360, "height": 740}


class Journey:
    """One browser's trip; remembers every URL it visited and the broker's answer."""

    def __init__(self, context: BrowserContext, shots: Shots) -> None:
        self.context = context
        self.page = context.new_page()
        self.shots = shots
        self.visited: list[str] = []
        self.page.on(
            "request", lambda r: self.visited.append(r.url) if r.is_navigation_request() else None
        )

    def open_demo(self, demo_url: str) -> Page:
        self.page.goto(f"{demo_url}/")
        self.page.get_by_role("link", name="Sign in with UMPASS").click()
        return self.page

    def broker_answers(self) -> list[str]:
        return [u for u in self.visited if BROKER_ENDPOINT in u]

    def went_to_activation(self, live_url: str) -> bool:
        return any(
            u.startswith(f"{live_url}/activate") or u.startswith(f"{live_url}/oidc")
            for u in self.visited
        )


def _identify(page: Page, who: StudentDetails) -> None:
    page.get_by_label("User ID").fill(who.user_id)
    page.get_by_label("Activation code").fill(who.code)
    type_date_of_birth(page, who.date_of_birth)
    page.get_by_label("Last 4 characters of your ID or passport number").fill(who.id_last4)
    page.get_by_role("button", name="Continue").click()


def _activate(page: Page, who: StudentDetails, inbox: Inbox, shots: Shots | None) -> None:
    """From the identify page to the moment the password is submitted."""
    _identify(page, who)
    expect(page.locator(".caption")).to_have_text("Step 2 of 5")
    if shots:
        shots.take(page, "policies")
    for box in page.get_by_role("checkbox").all():
        box.check()
    page.get_by_role("button", name="Accept and continue").click()
    if shots:
        shots.take(page, "contacts")
    prove_contacts(page, inbox, who.email, who.phone, shots)
    if shots:
        shots.take(page, "password")
    page.get_by_label("New password").fill(PASSWORD)
    page.get_by_label("Type it again").fill(PASSWORD)
    page.get_by_role("button", name="Activate my account").click()


def test_pending_student_is_activated_and_lands_signed_in(
    browser: Browser,
    demo_url: str,
    live_url: str,
    services: Services,
    inbox: Inbox,
    admin: KeycloakAdmin,
    shots_in: Callable[[str], Shots],
) -> None:
    who = enrol_student(
        services, "f", first_name="Mei", last_name="Ho", date_of_birth=date(2007, 1, 9)
    )
    shots = shots_in("first-sign-in")
    trip = Journey(browser.new_context(viewport=VIEWPORT), shots)
    page = trip.open_demo(demo_url)
    page.wait_for_selector("#username")
    shots.take(page, "keycloak-username")
    enter_username(page, who.user_id)

    # Keycloak sends the pending account to activation, never to a password form.
    page.wait_for_url(f"{live_url}/activate/identify")
    expect(page.get_by_text("Your account is not active yet")).to_be_visible()
    expect(page.get_by_role("button", name="Stop and return to the sign-in page")).to_be_visible()
    shots.take(page, "identify-from-sign-in")
    _activate(page, who, inbox, shots)

    # The end page shows the user ID to sign in with, then moves on by itself (nothing
    # is pressed here): back at the demo app, signed in as this student, without typing
    # the password again.
    expect(page.locator("#user-id")).to_have_text(who.user_id)
    expect(page.get_by_text("we will sign you in to where you started")).to_be_visible()
    shots.take(page, "done-from-sign-in")
    page.wait_for_url(f"{demo_url}/**")
    expect(page.locator("#who")).to_contain_text(who.user_id)
    expect(page.locator("#state")).to_have_text("active")
    shots.take(page, "demo-signed-in-after-activation")
    answers = trip.broker_answers()
    assert len(answers) == 1 and "code=" in answers[0]
    trip.context.close()
    # Keycloak spent the handoff ticket as it linked the account: the door is shut.
    account = services.keycloak.find_user(who.user_id)
    assert account is not None
    assert account.attribute(BROKER_TICKET) == "spent"
    assert [link["identityProvider"] for link in admin.get_user_social_logins(account.id)] == [
        "umpass-activation"
    ]

    # A new browser: username, then the new password; activation is never seen.
    again = Journey(browser.new_context(viewport=VIEWPORT), shots)
    page = again.open_demo(demo_url)
    enter_username(page, who.user_id)
    page.wait_for_selector("#password")
    shots.take(page, "keycloak-password")
    enter_password(page, PASSWORD)
    expect(page.locator("#who")).to_contain_text(who.user_id)
    assert not again.went_to_activation(live_url)
    assert not again.broker_answers()

    # The broker's answer from the first trip, replayed in this browser, is refused,
    # and so is a forged one; neither signs anybody in.
    again.context.close()
    for name, url in (
        ("replayed", answers[0]),
        ("forged", re.sub(r"code=[^&]+", f"code=forged-{who.user_id}", answers[0])),
    ):
        third = Journey(browser.new_context(viewport=VIEWPORT), shots)
        response = third.page.goto(url)
        assert response is not None and response.status >= 400
        shots.take(third.page, f"{name}-code-refused")
        third.page.goto(f"{demo_url}/")
        expect(third.page.locator("#who")).to_have_count(0)  # nobody signed in
        third.context.close()


def test_a_user_id_the_campus_app_passes_on_is_not_typed_again(
    browser: Browser,
    demo_url: str,
    live_url: str,
    services: Services,
    inbox: Inbox,
    shots_in: Callable[[str], Shots],
) -> None:
    """A campus app that knows who signs in sends login_hint: Keycloak pre-fills its
    username and passes it on (the provider's "loginHint"), and identify pre-fills its user
    ID with it. A pre-fill only: the code, date and digits still prove who it is."""
    who = enrol_student(services, "h")
    shots = shots_in("first-sign-in-hint")
    trip = Journey(browser.new_context(viewport=VIEWPORT), shots)
    page = trip.page
    page.goto(f"{demo_url}/login?{urlencode({'login_hint': who.user_id.upper()})}")
    expect(page.locator("#username")).to_have_value(who.user_id.upper())
    page.click("#kc-login")
    page.wait_for_url(f"{live_url}/activate/identify")
    expect(page.get_by_label("User ID")).to_have_value(who.user_id)
    shots.take(page, "identify-pre-filled")
    _still_proven(page, who)
    trip.context.close()


def test_the_user_id_typed_at_keycloak_is_not_typed_again(
    browser: Browser,
    demo_url: str,
    live_url: str,
    services: Services,
    shots_in: Callable[[str], Shots],
) -> None:
    """The campus app sends no hint; the student types the user ID into Keycloak's
    username form, in capitals and with spaces. Keycloak's authenticator from
    keycloak_addon/ passes it on, and identify shows it already filled in, as the service
    writes it. Never trusted: a wrong code still gets the one
    message, and only the code, date and digits get the student on."""
    who = enrol_student(services, "k")
    shots = shots_in("first-sign-in-typed-id")
    trip = Journey(browser.new_context(viewport=VIEWPORT), shots)
    page = trip.open_demo(demo_url)
    assert "login_hint" not in page.url
    enter_username(page, f"  {who.user_id.upper()} ")
    page.wait_for_url(f"{live_url}/activate/identify")
    expect(page.get_by_label("User ID")).to_have_value(who.user_id)
    shots.take(page, "identify-pre-filled-from-keycloak")
    _still_proven(page, who)
    trip.context.close()


def test_the_account_typed_over_the_apps_hint_is_the_one_passed_on(
    browser: Browser,
    demo_url: str,
    live_url: str,
    services: Services,
    shots_in: Callable[[str], Shots],
) -> None:
    """The campus app suggests one user ID, the student types another: identify is
    filled in with the account Keycloak identified, not the app's suggestion."""
    suggested = enrol_student(services, "m")
    typed = enrol_student(services, "n")
    trip = Journey(browser.new_context(viewport=VIEWPORT), shots_in("first-sign-in-typed-id"))
    page = trip.page
    page.goto(f"{demo_url}/login?{urlencode({'login_hint': suggested.user_id})}")
    expect(page.locator("#username")).to_have_value(suggested.user_id)
    enter_username(page, typed.user_id)
    page.wait_for_url(f"{live_url}/activate/identify")
    expect(page.get_by_label("User ID")).to_have_value(typed.user_id)
    trip.context.close()


def test_an_email_typed_at_keycloak_does_not_reveal_whose_user_id_it_is(
    browser: Browser,
    demo_url: str,
    live_url: str,
    services: Services,
    shots_in: Callable[[str], Shots],
) -> None:
    """Keycloak also finds an account by its email. Whoever types a pending student's
    email is sent to activation as before, but identify is not filled in with that
    student's user ID: only an ID the person typed is passed on, never looked up. The
    app's own hint is dropped too: it no longer names what was typed."""
    who = enrol_student(services, "e")
    trip = Journey(browser.new_context(viewport=VIEWPORT), shots_in("first-sign-in-typed-id"))
    page = trip.page
    page.goto(f"{demo_url}/login?{urlencode({'login_hint': who.user_id})}")
    enter_username(page, who.email.upper())
    page.wait_for_url(f"{live_url}/activate/identify")
    expect(page.locator(".caption")).to_have_text("Step 1 of 5")
    expect(page.get_by_label("User ID")).to_have_value("")
    trip.context.close()


def test_active_student_is_never_sent_to_activation(
    browser: Browser,
    demo_url: str,
    live_url: str,
    services: Services,
    shots_in: Callable[[str], Shots],
) -> None:
    who = enrol_student(services, "g")
    user = services.keycloak.find_user(who.user_id)
    assert user is not None
    assert services.keycloak.activate(
        user.id, PASSWORD, attributes={ACCEPTED_POLICIES: accepted_now(services)}
    )
    trip = Journey(browser.new_context(viewport=VIEWPORT), shots_in("first-sign-in"))
    page = trip.open_demo(demo_url)
    enter_username(page, who.user_id)
    enter_password(page, PASSWORD)
    expect(page.locator("#who")).to_contain_text(who.user_id)
    assert not trip.went_to_activation(live_url)
    trip.context.close()


def test_activation_of_a_never_ends_signed_in_as_b(
    browser: Browser,
    demo_url: str,
    live_url: str,
    services: Services,
    inbox: Inbox,
    shots_in: Callable[[str], Shots],
) -> None:
    a = enrol_student(services, "a")
    b = enrol_student(services, "b")
    shots = shots_in("first-sign-in-a-b")
    trip = Journey(browser.new_context(viewport=VIEWPORT), shots)

    # B's username at Keycloak, then A's own details at activation: the session is A's,
    # the one who proved who they are, and B is left untouched.
    page = trip.open_demo(demo_url)
    enter_username(page, b.user_id)
    page.wait_for_url(f"{live_url}/activate/identify")
    _activate(page, a, inbox, None)
    page.wait_for_url(f"{demo_url}/**")
    expect(page.locator("#who")).to_contain_text(a.user_id)
    assert b.user_id not in page.locator("#who").inner_text()
    b_user = services.keycloak.find_user(b.user_id)
    assert b_user is not None and b_user.activation_state == "pending"

    # Same browser, signed out of Keycloak and the app (a shared computer): B tries to
    # sign in. A's finished activation flow is still there, but it is not asserted
    # again: B gets a fresh start.
    service_cookies = ("umpass_session", "umpass_flow")
    keep = [c for c in trip.context.cookies() if c["name"] in service_cookies]
    assert any(c["name"] == "umpass_flow" for c in keep)
    trip.context.clear_cookies()
    trip.context.add_cookies(keep)  # type: ignore[arg-type]
    page = trip.open_demo(demo_url)
    enter_username(page, b.user_id)
    page.wait_for_url(f"{live_url}/activate/identify")
    expect(page.locator(".caption")).to_have_text("Step 1 of 5")
    shots.take(page, "next-student-starts-afresh")
    assert len(trip.broker_answers()) == 1  # only A's
    trip.context.close()


def test_stop_and_return_shows_keycloak_guidance(
    browser: Browser,
    demo_url: str,
    live_url: str,
    services: Services,
    shots_in: Callable[[str], Shots],
) -> None:
    who = enrol_student(services, "s")
    shots = shots_in("first-sign-in-stop")
    trip = Journey(browser.new_context(viewport=VIEWPORT), shots)
    page = trip.open_demo(demo_url)
    enter_username(page, who.user_id)
    page.wait_for_url(f"{live_url}/activate/identify")
    page.get_by_role("button", name="Stop and return to the sign-in page").click()
    page.wait_for_url(lambda url: url.startswith(demo_url) is False and "/realms/" in url)
    expect(page.get_by_text("Your account is not active yet")).to_be_visible()
    expect(page.locator("#password")).to_have_count(0)
    shots.take(page, "keycloak-after-stop")
    assert "error=access_denied" in trip.broker_answers()[0]
    trip.context.close()


def test_bad_authorization_requests_get_our_page_not_a_redirect(
    browser: Browser, live_url: str, settings: Settings, shots_in: Callable[[str], Shots]
) -> None:
    shots = shots_in("first-sign-in-refused")
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    good = {
        "response_type": "code",
        "client_id": settings.oidc.broker_client_id,
        "redirect_uri": settings.oidc.broker_redirect_uri,
        "scope": "openid",
        "state": "s",
        "nonce": "n",
    }
    for name, changes in (
        ("wrong-redirect-uri", {"redirect_uri": "https://attacker.example/cb"}),
        ("missing-state", {"state": ""}),
    ):
        response = page.goto(f"{live_url}/oidc/authorize?{urlencode({**good, **changes})}")
        assert response is not None and response.status == 400
        assert page.url.startswith(live_url)
        expect(page.get_by_text("This sign-in link is not valid")).to_be_visible()
        shots.take(page, name)
    context.close()


def test_even_a_compromised_service_cannot_reach_an_account_that_is_not_active(
    app: Flask,
    live_url: str,
    keycloak_server: KeycloakUnderTest,
    realm: RealmUnderTest,
    services: Services,
    admin: KeycloakAdmin,
    realm_changes: RealmChanges,
) -> None:
    """Defence in depth: if the service (or its key) were ever made to assert a staff
    account, the realm's broker flows still refuse it and link nothing."""
    staff = realm_changes.add_staff()
    who = enrol_student(services, "t")
    start = sign_in(keycloak_server.url, realm.name, who.user_id, PASSWORD)
    assert start.session is not None and start.location
    to_service = start.session.get(start.location, allow_redirects=False, timeout=30)
    authorize = urlparse(to_service.headers["Location"])
    assert authorize.path == "/oidc/authorize"
    params = {k: v[0] for k, v in parse_qs(authorize.query).items()}
    # The service misbehaving: an answer naming the staff account, not the student.
    with app.test_request_context():
        page = handoff.answer(params, Subject(keycloak_id=staff.id, username=staff.username))
    url = html.unescape(re.search(r'content="\d+;url=([^"]+)"', str(page)).group(1))  # type: ignore[union-attr]
    back = start.session.get(url, timeout=30)
    assert "We could not finish signing you in" in html.unescape(back.text)
    assert admin.get_user_social_logins(staff.id) == []  # nothing linked
    assert not urlparse(back.url).path.startswith("/demo")


# -- the identity provider is a door only right after activation --------------------------


def _assert_at_keycloak(
    app: Flask, session: requests.Session, to_service: str, subject: Subject
) -> requests.Response:
    """The service answering Keycloak's broker request for `subject`; where it ends."""
    authorize = urlparse(
        session.get(to_service, allow_redirects=False, timeout=30).headers["Location"]
    )
    assert authorize.path == "/oidc/authorize"
    params = {k: v[0] for k, v in parse_qs(authorize.query).items()}
    with app.test_request_context():
        page = handoff.answer(params, subject)
    url = html.unescape(re.search(r'content="\d+;url=([^"]+)"', str(page)).group(1))  # type: ignore[union-attr]
    answer = session.get(url, allow_redirects=False, timeout=30)
    while answer.status_code in (302, 303) and not answer.headers["Location"].startswith(
        demo_callback()
    ):
        answer = session.get(answer.headers["Location"], allow_redirects=False, timeout=30)
    return answer


def _broker_sign_in(
    keycloak_server: KeycloakUnderTest, realm: RealmUnderTest
) -> tuple[requests.Session, str]:
    """A campus app's sign-in that asks for the activation provider by name (kc_idp_hint):
    the way to reach /broker/umpass-activation/login for an account that is active."""
    session = requests.Session()
    params, _verifier = authorization_request("umpass-demo", demo_callback())
    params["kc_idp_hint"] = "umpass-activation"
    start = session.get(
        f"{keycloak_server.url}/realms/{realm.name}/protocol/openid-connect/auth",
        params=params,
        allow_redirects=False,
        timeout=30,
    )
    for cookie in session.cookies:  # Keycloak marks them Secure even on loopback
        cookie.secure = False
    assert "/broker/umpass-activation/login" in start.headers["Location"]
    return session, start.headers["Location"]


def _signed_in(answer: requests.Response) -> bool:
    return answer.status_code == 302 and "code=" in answer.headers.get("Location", "")


def _pending_student(services: Services, prefix: str) -> Subject:
    who = enrol_student(services, prefix)
    account = services.keycloak.find_user(who.user_id)
    assert account is not None
    return Subject(account.id, who.user_id)


def _first_sign_in(
    app: Flask,
    keycloak_server: KeycloakUnderTest,
    realm: RealmUnderTest,
    services: Services,
    student: Subject,
) -> None:
    """Pending, sent to activation, activated for that sign-in, answered: signed in, linked."""
    start = sign_in(keycloak_server.url, realm.name, student.username, PASSWORD)
    assert start.session is not None and start.location
    services.keycloak.activate(
        student.keycloak_id,
        PASSWORD,
        attributes={ACCEPTED_POLICIES: accepted_now(services)},
        for_sign_in=True,
    )
    assert _signed_in(_assert_at_keycloak(app, start.session, start.location, student))


def test_an_assertion_for_a_student_active_for_a_day_is_refused(
    app: Flask,
    live_url: str,
    keycloak_server: KeycloakUnderTest,
    realm: RealmUnderTest,
    services: Services,
    admin: KeycloakAdmin,
) -> None:
    student = _pending_student(services, "d")
    yesterday = datetime.now(UTC) - timedelta(days=1)
    services.keycloak.activate(student.keycloak_id, PASSWORD, attributes={}, activated_at=yesterday)
    session, to_service = _broker_sign_in(keycloak_server, realm)
    answer = _assert_at_keycloak(app, session, to_service, student)
    assert not _signed_in(answer)
    assert "We could not finish signing you in" in html.unescape(answer.text)
    assert admin.get_user_social_logins(student.keycloak_id) == []  # nothing linked


def test_a_linked_student_is_never_signed_in_by_a_second_assertion(
    app: Flask,
    live_url: str,
    keycloak_server: KeycloakUnderTest,
    realm: RealmUnderTest,
    services: Services,
    admin: KeycloakAdmin,
) -> None:
    student = _pending_student(services, "l")
    _first_sign_in(app, keycloak_server, realm, services, student)
    assert len(admin.get_user_social_logins(student.keycloak_id)) == 1
    # Later, anything that makes the service assert the student again is refused.
    session, to_service = _broker_sign_in(keycloak_server, realm)
    again = _assert_at_keycloak(app, session, to_service, student)
    assert not _signed_in(again)
    assert "We could not finish signing you in" in html.unescape(again.text)
    # Their own password still signs them in.
    assert sign_in(keycloak_server.url, realm.name, student.username, PASSWORD).ok


def test_a_replayed_link_signs_in_no_one_outside_the_students_or_pending(
    app: Flask,
    live_url: str,
    keycloak_server: KeycloakUnderTest,
    realm: RealmUnderTest,
    services: Services,
    admin: KeycloakAdmin,
    monkeypatch: pytest.MonkeyPatch,
    realm_changes: RealmChanges,
) -> None:
    """A service made to replay the `sub` of an existing link skips the first-broker flow:
    the provider's post-login flow still refuses an account set back to pending and one
    taken out of umpass-students (e.g. a former student who is now staff)."""
    student = _pending_student(services, "r")
    _first_sign_in(app, keycloak_server, realm, services, student)
    account_id = student.keycloak_id
    (link,) = admin.get_user_social_logins(account_id)
    monkeypatch.setattr(oidc_server, "broker_sub", lambda _code_hash: link["userId"])

    set_attributes(admin, account_id, {ACTIVATION_STATE: ["pending"]})
    session, to_service = _broker_sign_in(keycloak_server, realm)
    assert not _signed_in(_assert_at_keycloak(app, session, to_service, student))

    set_attributes(admin, account_id, {ACTIVATION_STATE: ["active"]})
    group = admin.get_group_by_path("/umpass-students")
    admin.group_user_remove(account_id, group["id"])
    realm_changes.on_undo(lambda: admin.delete_user(account_id))  # staff now: it goes
    admin.assign_realm_roles(account_id, [admin.get_realm_role("activation-admin")])
    session, to_service = _broker_sign_in(keycloak_server, realm)
    answer = _assert_at_keycloak(app, session, to_service, student)
    assert not _signed_in(answer)
    assert "We could not finish signing you in" in html.unescape(answer.text)


def _still_proven(page: Page, who: StudentDetails) -> None:
    """A pre-filled user ID is never trusted: a wrong code gets the one message and
    stays at step 1; the right code, date and digits move on."""
    page.get_by_label("Activation code").fill("AAAAA-BBBBB-CCCCC")
    type_date_of_birth(page, who.date_of_birth)
    page.get_by_label("Last 4 characters of your ID or passport number").fill(who.id_last4)
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_text("We could not match those details")).to_be_visible()
    expect(page.locator(".caption")).to_have_text("Step 1 of 5")
    page.get_by_label("Activation code").fill(who.code)
    type_date_of_birth(page, who.date_of_birth)
    page.get_by_role("button", name="Continue").click()
    expect(page.locator(".caption")).to_have_text("Step 2 of 5")
