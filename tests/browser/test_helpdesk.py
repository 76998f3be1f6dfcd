"""The help-desk console in Chromium: staff sign in through the realm; roles are checked
on every route; re-issued codes are shown once and work; all lockouts clear; every
action is audited and exported; the funnel is a chart, a CSV and Prometheus metrics;
locked user IDs are a list, metrics and, past the threshold, a mass-lockout banner;
recoveries show on the timeline, the lockouts and a chart per week."""

from __future__ import annotations

import csv
import io
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
import requests
from flask import Flask
from keycloak import KeycloakAdmin
from playwright.sync_api import Browser, BrowserContext, Page, expect
from sqlalchemy import select

from provider.config import Settings
from provider.guards import lockout
from provider.keycloak import ACCEPTED_POLICIES
from provider.services import Services
from provider.storage.models import ActivationCode, AuditEvent
from tests.browser.sso import enter_password, enter_username
from tests.browser.test_activation_in_chromium import PASSWORD
from tests.conftest import METRICS_TOKEN, KeycloakUnderTest, RealmUnderTest
from tests.support.challenge import lock
from tests.support.flow_client import FlowClient
from tests.support.inbox import Inbox
from tests.support.keycloak_login import sign_in
from tests.support.policies import accepted_now
from tests.support.realm_changes import RealmChanges
from tests.support.recovery import activate_student
from tests.support.recovery_story import Walked, lock_recovery, recover
from tests.support.shots import Shots
from tests.support.staff import STAFF_PASSWORD
from tests.support.students import enrol_student

VIEWPORT = {"width": 1024, "height": 900}


def _signed_in(browser: Browser, live_url: str, username: str) -> tuple[BrowserContext, Page]:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.goto(f"{live_url}/helpdesk/")
    enter_username(page, username)
    enter_password(page, STAFF_PASSWORD)
    page.wait_for_url(f"{live_url}/helpdesk/**")
    return context, page


@pytest.fixture(scope="module")
def helpdesk_staff(module_staff: RealmChanges) -> str:
    return module_staff.add_staff("activation-helpdesk").username


@pytest.fixture(scope="module")
def admin_staff(module_staff: RealmChanges) -> str:
    return module_staff.add_staff("activation-admin").username


@pytest.fixture
def shots(shots_in: Callable[[str], Shots]) -> Shots:
    return shots_in("helpdesk")


def _codes_of(services: Services, user_id: str) -> int:
    with services.sessions() as db:
        return len(
            db.scalars(select(ActivationCode).where(ActivationCode.user_id == user_id)).all()
        )


def test_help_desk_reissues_a_code_shown_once_that_works(
    browser: Browser,
    live_url: str,
    helpdesk_staff: str,
    services: Services,
    app: Flask,
    shots: Shots,
) -> None:
    who = enrol_student(services, "h")
    context, page = _signed_in(browser, live_url, helpdesk_staff)
    shots.take(page, "find")
    page.get_by_label("User ID").fill(who.user_id.upper())
    page.get_by_role("button", name="Find").click()
    expect(page.get_by_role("heading", name=who.user_id)).to_be_visible()
    expect(page.locator("#account-state")).to_have_text("pending")
    body = page.content()
    assert who.email not in body and who.phone not in body  # masked only
    assert who.code not in body

    # A question first: nothing is issued until it is answered.
    page.get_by_role("button", name="Issue a new code").click()
    expect(page.get_by_role("heading", name=f"Issue a new activation code to {who.user_id}?"))
    shots.take(page, "code-confirm")
    assert _codes_of(services, who.user_id) == 1
    page.get_by_role("link", name="Cancel").click()
    expect(page.get_by_role("heading", name=who.user_id)).to_be_visible()
    assert _codes_of(services, who.user_id) == 1
    page.get_by_role("button", name="Issue a new code").click()

    # Yes: the code's page is reached by a redirect (a GET); the session cookie the POST
    # set (the code's ticket in it) is kept, to send again below.
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.get_by_role("button", name="Yes, issue a new code").click()
    assert posted.value.status == 303
    ticket_cookie = (posted.value.header_value("set-cookie") or "").split(";")[0]
    assert ticket_cookie
    page.wait_for_url(f"{live_url}/helpdesk/students/{who.user_id}/new-code")
    new_code = page.locator("#new-code .code").inner_text()
    shots.take(page, "code-reissued")
    assert _codes_of(services, who.user_id) == 2

    # Shown once: a reload shows it no more and issues no other; nor does the cookie the
    # browser held before the code was shown, sent again.
    page.reload()
    page.wait_for_url(f"{live_url}/helpdesk/students/{who.user_id}")
    expect(page.locator("#new-code")).to_have_count(0)
    expect(page.get_by_text("A new code is shown only once")).to_be_visible()
    assert new_code not in page.content()
    replayed = page.request.get(
        f"{live_url}/helpdesk/students/{who.user_id}/new-code",
        headers={"Cookie": ticket_cookie},
    )
    assert replayed.ok and new_code not in replayed.text()
    assert _codes_of(services, who.user_id) == 2

    flow = FlowClient(app.test_client())
    old = flow.identify(who)
    assert old.status_code == 400  # the previous code no longer works
    who.code = new_code
    assert flow.identify(who).headers["Location"].endswith("/activate/policies")
    page.goto(f"{live_url}/helpdesk/students/{who.user_id}")
    timeline = page.locator(".timeline")
    expect(timeline).to_contain_text("Help desk issued a new activation code")
    expect(timeline).to_contain_text("Imported from the Registry")
    # Who, in words: the staff member by name, the service, the student.
    issued = timeline.locator("tr[data-action='helpdesk.code_reissued']")
    expect(issued.locator("td").nth(1)).to_have_text(f"Help desk: {helpdesk_staff}")
    imported = timeline.locator("tr[data-action='student.imported']")
    expect(imported.locator("td").nth(1)).to_have_text("The service")
    expect(timeline).not_to_contain_text("staff:")
    shots.take(page, "timeline")

    # Signing out ends the realm's session too: the next person at this PC must sign in.
    page.get_by_role("button", name="Sign out").click()
    # The page in between also says "Signed out" while it moves on to Keycloak's logout:
    # wait until Keycloak has sent the browser back, or the realm session may outlive us.
    page.wait_for_url(f"{live_url}/helpdesk/signed-out")
    expect(page.get_by_role("heading", name="Signed out")).to_be_visible()
    page.goto(f"{live_url}/helpdesk/")
    page.wait_for_selector("#username")  # Keycloak asks who it is
    context.close()
    with services.sessions() as db:
        staff_events = db.scalars(
            select(AuditEvent.action).where(AuditEvent.actor == f"staff:{helpdesk_staff}")
        ).all()
    assert {"staff.signed_in", "staff.signed_out"} <= set(staff_events)


def test_the_timeline_is_on_the_universitys_clock(
    browser: Browser,
    live_url: str,
    helpdesk_staff: str,
    services: Services,
    settings: Settings,
) -> None:
    """Each time on the student's page is on the university's clock (UMPASS_TIME_ZONE,
    Asia/Macau by default: UTC+8), and the page names that clock."""
    who = enrol_student(services, "z")
    context, page = _signed_in(browser, live_url, helpdesk_staff)
    page.goto(f"{live_url}/helpdesk/students/{who.user_id}")
    assert settings.time_zone == "Asia/Macau"
    expect(page.locator("#time-zone")).to_have_text(
        "Times are in Macao SAR China Time (Asia/Macau)."
    )
    with services.sessions() as db:
        issued = db.scalars(
            select(AuditEvent.at).where(
                AuditEvent.subject == who.user_id, AuditEvent.action == "code.issued"
            )
        ).one()
        expires = db.scalars(
            select(ActivationCode.expires_at).where(ActivationCode.user_id == who.user_id)
        ).one()
    macau = ZoneInfo("Asia/Macau")
    row = page.locator(".timeline tr[data-action='code.issued'] td")
    expect(row.nth(0)).to_have_text(issued.astimezone(macau).strftime("%Y-%m-%d %H:%M:%S"))
    until = expires.astimezone(macau).strftime("%Y-%m-%d %H:%M")
    expect(row.nth(3)).to_have_text(f"expires {until}")
    context.close()


def test_clearing_both_lockouts(
    browser: Browser,
    live_url: str,
    helpdesk_staff: str,
    services: Services,
    app: Flask,
    keycloak_server: KeycloakUnderTest,
    realm: RealmUnderTest,
) -> None:
    # A pending student locked out of identify here ...
    pending = enrol_student(services, "l")
    flow = FlowClient(app.test_client())
    for _ in range(5):
        flow.identify(pending, id_last4="0000")
    assert flow.identify(pending).status_code == 429
    # ... and an activated one locked by Keycloak after five wrong passwords.
    active = enrol_student(services, "k")
    user = services.keycloak.find_user(active.user_id)
    assert user is not None
    services.keycloak.activate(
        user.id, PASSWORD, attributes={ACCEPTED_POLICIES: accepted_now(services)}
    )

    def sign_in_as(password: str) -> bool:
        return sign_in(keycloak_server.url, realm.name, active.user_id, password).ok

    for _ in range(5):
        assert not sign_in_as("wrong " + PASSWORD)
    assert services.keycloak.lockout_status(user.id).get("disabled") is True

    context, page = _signed_in(browser, live_url, helpdesk_staff)
    page.goto(f"{live_url}/helpdesk/students/{pending.user_id}")
    expect(page.locator("#service-lock")).to_contain_text("until")
    page.get_by_role("button", name="Clear all lockouts").click()
    expect(page.get_by_text("All lockouts are cleared")).to_be_visible()
    expect(page.locator("#service-lock")).to_contain_text("no")
    assert flow.identify(pending).headers["Location"].endswith("/activate/policies")

    page.goto(f"{live_url}/helpdesk/students/{active.user_id}")
    expect(page.locator("#keycloak-lock")).to_have_text("yes")
    page.get_by_role("button", name="Clear all lockouts").click()
    expect(page.locator("#keycloak-lock")).to_have_text("no")
    assert sign_in_as(PASSWORD)
    context.close()


def test_roles_are_checked_on_every_route(
    browser: Browser,
    live_url: str,
    helpdesk_staff: str,
    services: Services,
    realm_changes: RealmChanges,
) -> None:
    who = enrol_student(services, "r")
    routes = [
        "/helpdesk/",
        f"/helpdesk/students/{who.user_id}",
        "/helpdesk/lockouts",
        "/helpdesk/funnel",
        "/helpdesk/funnel.csv",
        "/helpdesk/audit.csv",
    ]
    # Nobody signed in: every route sends to the realm's sign-in.
    for route in routes:
        answer = requests.get(live_url + route, allow_redirects=False, timeout=30)
        assert answer.status_code == 302 and answer.headers["Location"].endswith("/helpdesk/login")
    for route in (
        f"/helpdesk/students/{who.user_id}/code",
        f"/helpdesk/students/{who.user_id}/unlock",
    ):
        assert requests.post(live_url + route, timeout=30).status_code == 400  # CSRF first

    # Signed in without a help-desk role: refused at sign-in.
    nobody = realm_changes.add_staff().username
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.goto(f"{live_url}/helpdesk/")
    enter_username(page, nobody)
    enter_password(page, STAFF_PASSWORD)
    expect(page.get_by_text("Your account has no help-desk role")).to_be_visible()
    page.goto(f"{live_url}/helpdesk/")  # still signed in to the realm: refused again
    expect(page.get_by_text("Your account has no help-desk role")).to_be_visible()
    expect(page.get_by_text("Find a student")).to_have_count(0)
    context.close()

    # The help-desk role: students yes, admin pages no; a POST without CSRF is refused.
    context, page = _signed_in(browser, live_url, helpdesk_staff)
    for route in ("/helpdesk/funnel", "/helpdesk/funnel.csv", "/helpdesk/audit.csv"):
        assert page.request.get(live_url + route).status == 403
    # CSRF on both of the new code's posts: the question's and the answer's.
    for form in ({}, {"confirm": "yes"}):
        refused = page.request.post(f"{live_url}/helpdesk/students/{who.user_id}/code", form=form)
        assert refused.status == 400
    missing = f"zz{secrets.token_hex(3)[:5]}"
    assert page.request.get(f"{live_url}/helpdesk/students/{missing}").status == 404
    context.close()
    # Looking and being refused leave a trace too, not only changes.
    events = _events_of(services, f"staff:{helpdesk_staff}")
    assert ("helpdesk.not_found", missing, {}) in events
    refusals = {detail["page"] for action, _, detail in events if action == "helpdesk.refused"}
    assert refusals == {"/helpdesk/funnel", "/helpdesk/funnel.csv", "/helpdesk/audit.csv"}
    assert ("staff.refused_no_role", None, {}) in _events_of(services, f"staff:{nobody}")


def _events_of(services: Services, actor: str) -> list[tuple[str, str | None, dict]]:
    with services.sessions() as db:
        rows = db.execute(
            select(AuditEvent.action, AuditEvent.subject, AuditEvent.detail).where(
                AuditEvent.actor == actor
            )
        ).all()
    return [(action, subject, detail) for action, subject, detail in rows]


def test_sign_out_and_role_removal_take_effect_at_once(
    browser: Browser, live_url: str, admin: KeycloakAdmin, realm_changes: RealmChanges
) -> None:
    """The browser holds only a server-side session's id, and every request asks the
    realm for the roles: a copied cookie dies with sign-out, a removed role at once."""
    staff = realm_changes.add_staff("activation-helpdesk")
    context, page = _signed_in(browser, live_url, staff.username)
    expect(page.get_by_role("heading", name="Find a student")).to_be_visible()
    copied = context.cookies()
    admin.delete_realm_roles_of_user(staff.id, [admin.get_realm_role("activation-helpdesk")])
    assert page.request.get(f"{live_url}/helpdesk/").status == 403  # no grace period
    admin.assign_realm_roles(staff.id, [admin.get_realm_role("activation-helpdesk")])
    page.goto(f"{live_url}/helpdesk/")
    expect(page.get_by_role("heading", name="Find a student")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{live_url}/helpdesk/signed-out")
    context.close()
    replay = browser.new_context(viewport=VIEWPORT)
    replay.add_cookies(copied)  # type: ignore[arg-type]
    answer = replay.request.get(f"{live_url}/helpdesk/", max_redirects=0)
    assert answer.status == 302 and answer.headers["location"].endswith("/helpdesk/login")
    replay.close()


def test_admin_exports_the_audit_and_sees_the_funnel(
    browser: Browser,
    live_url: str,
    admin_staff: str,
    helpdesk_staff: str,
    services: Services,
    app: Flask,
    shots: Shots,
) -> None:
    who = enrol_student(services, "a")
    flow = FlowClient(app.test_client())
    flow.identify(who)
    context, page = _signed_in(browser, live_url, admin_staff)
    page.goto(f"{live_url}/helpdesk/students/{who.user_id}")
    export = page.request.get(f"{live_url}/helpdesk/audit.csv")
    assert export.status == 200
    rows = list(csv.DictReader(io.StringIO(export.text())))
    mine = [r for r in rows if r["subject"] == who.user_id]
    assert {"code.issued", "identify.ok", "helpdesk.viewed"} <= {r["action"] for r in mine}
    assert any(r["actor"] == f"staff:{admin_staff}" for r in mine)
    assert who.code not in export.text()

    page.goto(f"{live_url}/helpdesk/funnel")
    expect(page.locator("svg[role=img]").first).to_be_visible()
    shots.take(page, "funnel")
    numbers = page.request.get(f"{live_url}/helpdesk/funnel.csv").text()
    assert numbers.splitlines()[0].startswith("intake,imported,started")
    context.close()

    metrics = requests.get(
        f"{live_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=30
    )
    assert metrics.status_code == 200
    assert "umpass_activation_funnel_students{intake=" in metrics.text
    assert requests.get(f"{live_url}/metrics", timeout=30).status_code == 404


def test_a_staff_account_is_outside_the_console(
    browser: Browser,
    live_url: str,
    admin_staff: str,
    services: Services,
    realm_changes: RealmChanges,
) -> None:
    """A staff account whose username looks like a user ID: not shown, no code, no unlock."""
    target = f"sf{secrets.randbelow(10**5):05d}"
    realm_changes.add_staff("activation-admin", username=target)
    who = enrol_student(services, "k")
    context, page = _signed_in(browser, live_url, admin_staff)
    try:
        page.goto(f"{live_url}/helpdesk/students/{who.user_id}")  # a form, for its CSRF token
        token = page.locator("input[name=csrf_token]").first.get_attribute("value") or ""
        assert page.request.get(f"{live_url}/helpdesk/students/{target}").status == 404
        for action in ("code", "unlock"):
            answer = page.request.post(
                f"{live_url}/helpdesk/students/{target}/{action}", form={"csrf_token": token}
            )
            assert answer.status == 404, action
    finally:
        context.close()
    with services.sessions() as db:
        codes = db.scalars(select(ActivationCode).where(ActivationCode.user_id == target)).all()
    assert codes == []
    events = _events_of(services, f"staff:{admin_staff}")
    assert [a for a, subject, _ in events if subject == target] == ["helpdesk.not_found"] * 3


def _metric(live_url: str, name: str, intake: str | None = None) -> float:
    """One sample of the /metrics scrape (0 when absent)."""
    text = requests.get(
        f"{live_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=30
    ).text
    labels = f'{{intake="{intake}"}}' if intake is not None else ""
    found = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_locked_ids_are_listed_counted_and_a_mass_lockout_is_flagged(
    browser: Browser,
    live_url: str,
    helpdesk_staff: str,
    services: Services,
    app: Flask,
    settings: Settings,
    shots: Shots,
) -> None:
    intake = f"t{secrets.token_hex(3)}"
    first, second = (enrol_student(services, "m", intake=intake) for _ in range(2))
    ghost = f"zz{secrets.token_hex(3)[:5]}"  # nobody's ID: locks the same way
    ghosts_before = _metric(live_url, "umpass_identify_lockouts_started_total", "(not enrolled)")
    # Typing that is not a user ID (here an ID number in the wrong box) locks too, but is
    # never shown; then three typed IDs locked by wrong attempts, in this order.
    typo = "5432167(8)"
    for who, typed in (
        (first, {"user_id": typo}),
        (first, {}),
        (second, {}),
        (first, {"user_id": ghost}),
    ):
        assert lock(app, who, FlowClient(app.test_client()), **typed).status_code == 429
    assert _metric(live_url, "umpass_identify_lockouts_active", intake) == 2
    assert _metric(live_url, "umpass_identify_lockouts_started_total", intake) == 2
    assert _metric(live_url, "umpass_identify_lockouts_active", "(not enrolled)") >= 1
    assert (
        _metric(live_url, "umpass_identify_lockouts_started_total", "(not enrolled)")
        == ghosts_before + 2  # the typing and the ghost
    )

    context, page = _signed_in(browser, live_url, helpdesk_staff)
    page.get_by_role("link", name="Locked user IDs").click()
    expect(page.get_by_role("heading", name="Locked user IDs")).to_be_visible()
    rows = page.locator("#locked-ids tbody tr")
    newest = [rows.nth(i).locator("td").first.inner_text() for i in range(3)]
    assert newest == [f"{ghost} (not enrolled here)", second.user_id, first.user_id]
    expect(rows.first.locator("td").nth(1)).to_have_text("activation")  # the door
    expect(rows.first.locator("td").nth(4)).to_have_text("1")  # locks in a row
    expect(page.locator("#lockout-counts")).to_contain_text(f"{intake}: 2")
    body = page.content()
    assert first.email not in body and first.phone not in body and first.code not in body
    assert typo not in body
    expect(page.get_by_text("(typing that is not a user ID)").first).to_be_visible()
    recent = int(page.locator("#locked-recently").inner_text())
    if recent <= settings.mass_lockout_threshold:
        expect(page.locator("#mass-lockout")).to_have_count(0)
        assert _metric(live_url, "umpass_identify_mass_lockout") == 0
    # An attack on an intake: more IDs locked within the hour than the threshold (by the
    # same counter the identify step uses, without its failure floor per attempt).
    now = datetime.now(UTC)
    for _ in range(max(0, settings.mass_lockout_threshold + 1 - recent)):
        key = lockout.lock_key(f"q{secrets.token_hex(3)}")
        for _ in range(lockout.MAX_FAILURES):
            assert lockout.begin_attempt(services.sessions, key, now) is None
            lockout.record_failure(services.sessions, key, now)
    page.reload()
    banner = page.get_by_role("alert")
    expect(banner).to_contain_text("Mass lockout")
    expect(banner).to_contain_text(f"more than {settings.mass_lockout_threshold}")
    assert _metric(live_url, "umpass_identify_mass_lockout") == 1
    page.set_viewport_size({"width": 360, "height": 740})
    shots.take(page, "lockouts-mass")

    # Each row leads to the student's page, where the lock is cleared as before.
    page.get_by_role("link", name=first.user_id, exact=True).click()
    page.get_by_role("button", name="Clear all lockouts").click()
    page.get_by_role("link", name="Locked user IDs").click()
    expect(page.get_by_role("link", name=second.user_id, exact=True)).to_be_visible()
    expect(page.get_by_role("link", name=first.user_id, exact=True)).to_have_count(0)
    context.close()
    assert _metric(live_url, "umpass_identify_lockouts_active", intake) == 1
    events = _events_of(services, f"staff:{helpdesk_staff}")
    viewed = [detail for action, _, detail in events if action == "helpdesk.lockouts_viewed"]
    assert len(viewed) >= 3 and all(set(detail) == {"locked", "recent"} for detail in viewed)


def test_recoveries_on_the_timeline_the_lockouts_and_the_chart(
    browser: Browser,
    live_url: str,
    admin_staff: str,
    services: Services,
    app: Flask,
    inbox: Inbox,
    shots_in: Callable[[str], Shots],
) -> None:
    """What the desk sees after a student's recoveries: plain words, no secret."""
    shots = shots_in("helpdesk-recovery")
    who, walked = enrol_student(services, "v"), Walked()
    activate_student(app, inbox, who)
    recover(app, inbox, who, choice="unlock", channel="phone", walked=walked)
    recover(app, inbox, who, choice="password", walked=walked)
    lock_recovery(app, inbox, who, typed=who.email, channel="phone", sends=False)

    context, page = _signed_in(browser, live_url, admin_staff)
    page.goto(f"{live_url}/helpdesk/students/{who.user_id}")
    timeline = page.locator(".timeline")
    for words in (
        "Recovery started: a code was sent",
        "Account unlocked by the student (recovery)",
        "Password reset by the student (recovery)",
        "Recovery: locked after wrong tries",
    ):
        expect(timeline).to_contain_text(words)
    expect(page.locator("#recovery-lock")).to_contain_text("until")
    assert not any(secret in page.content() for secret in (*walked.codes, *walked.passwords))
    shots.take(page, "timeline")

    page.get_by_role("link", name="Locked user IDs").click()
    row = page.locator("#locked-ids tr[data-door=recovery]", has_text=who.user_id)
    expect(row.locator("td").nth(1)).to_have_text("recovery")
    shots.take(page, "lockouts")

    page.get_by_role("link", name="Recoveries per week").click()
    expect(page.get_by_role("heading", name="Recoveries per week")).to_be_visible()
    chart = page.get_by_role("img", name=re.compile("Recoveries per week, last 12 weeks"))
    expect(chart).to_be_visible()
    this_week = page.locator("#recoveries-table tbody tr").last.locator("td")
    assert int(this_week.nth(0).inner_text()) >= 1 and int(this_week.nth(1).inner_text()) >= 1
    shots.take(page, "recoveries-chart")
    context.close()
