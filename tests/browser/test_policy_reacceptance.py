"""Re-acceptance at sign-in, in real Chromium against the real Keycloak and its policy gate
(keycloak_addon): once a new version of a policy is published, an active student who signs
in to a campus app reads and accepts it before reaching the app, and is never asked again;
one who declines is not signed in, anywhere.

Screenshots go to artifacts/browser/policy-reacceptance/.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import Browser, BrowserContext, Page, expect
from sqlalchemy import select

from provider.keycloak import ACCEPTED_POLICIES
from provider.services import Services
from provider.storage.models import AuditEvent, PolicyAcceptance
from tests.browser.sso import enter_password, enter_username
from tests.browser.test_activation_in_chromium import PASSWORD
from tests.support.flow_client import StudentDetails
from tests.support.policies import accepted_now, published
from tests.support.shots import Shots
from tests.support.students import active_student

VIEWPORT = {"width": 360, "height": 740}
NEW = ("it-acceptable-use", "2027-01")
REVIEW_HEADING = "New version of the campus IT policies"


def _active_student(services: Services, prefix: str) -> StudentDetails:
    """Active, having accepted every version current now (before the test publishes)."""
    return active_student(services, prefix, PASSWORD, accepted_now(services))


def _sign_in_to_demo(context: BrowserContext, demo_url: str, who: StudentDetails) -> Page:
    page = context.new_page()
    page.goto(f"{demo_url}/")
    page.get_by_role("link", name="Sign in with UMPASS").click()
    enter_username(page, who.user_id)
    enter_password(page, PASSWORD)
    return page


def _at_review(page: Page, live_url: str) -> None:
    expect(page.get_by_role("heading", level=1)).to_have_text(REVIEW_HEADING)
    # The ticket is out of the address bar at once.
    expect(page).to_have_url(f"{live_url}/policies/review")


def _records(services: Services, who: StudentDetails) -> list[str]:
    account = services.keycloak.find_user(who.user_id)
    assert account is not None
    return list(account.attributes.get(ACCEPTED_POLICIES) or [])


def test_a_student_accepts_the_new_version_at_sign_in_and_reaches_the_app(
    browser: Browser,
    demo_url: str,
    live_url: str,
    services: Services,
    shots_in: Callable[[str], Shots],
) -> None:
    shots = shots_in("policy-reacceptance")
    who = _active_student(services, "r")
    with published(services, *NEW):
        context = browser.new_context(viewport=VIEWPORT)
        page = _sign_in_to_demo(context, demo_url, who)
        _at_review(page, live_url)
        expect(page.locator(".policy-changes")).to_contain_text(
            "What changed since version 2026-09, which you accepted"
        )
        shots.take(page, "review")
        # Accepting without the box: an error, nothing written.
        page.get_by_role("button", name="Accept and continue").click()
        expect(page.locator(".error-summary")).to_be_focused()
        shots.take(page, "review-error")
        assert not any(r.startswith("it-acceptable-use@2027-01:") for r in _records(services, who))
        page.get_by_label(re.compile("I accept this policy")).check()
        page.get_by_role("button", name="Accept and continue").click()
        expect(page.locator("#who")).to_contain_text(who.user_id)
        shots.take(page, "in-the-app")
        context.close()

        records = _records(services, who)
        assert any(r.startswith("it-acceptable-use@2027-01:") for r in records)
        assert any(r.startswith("it-acceptable-use@2026-09:") for r in records), "history kept"
        with services.reads() as db:
            kept = db.scalars(
                select(PolicyAcceptance.version).where(
                    PolicyAcceptance.user_id == who.user_id,
                    PolicyAcceptance.policy_id == "it-acceptable-use",
                )
            ).all()
            assert "2027-01" in kept
            assert db.scalar(
                select(AuditEvent.id).where(
                    AuditEvent.subject == who.user_id, AuditEvent.action == "policy.accepted"
                )
            )

        # Never asked again: a fresh browser goes straight to the app.
        again = browser.new_context(viewport=VIEWPORT)
        page = _sign_in_to_demo(again, demo_url, who)
        expect(page.locator("#who")).to_contain_text(who.user_id)
        assert "/policies/review" not in page.url
        again.close()


def test_a_signed_in_student_is_stopped_at_the_next_sign_in_through_the_sso_session(
    browser: Browser,
    demo_url: str,
    live_url: str,
    services: Services,
) -> None:
    """Signed in before the publication: the next sign-in to an app, by the SSO cookie
    alone (no password typed), still meets the new version."""
    who = _active_student(services, "s")
    context = browser.new_context(viewport=VIEWPORT)
    page = _sign_in_to_demo(context, demo_url, who)
    expect(page.locator("#who")).to_contain_text(who.user_id)
    with published(services, *NEW):
        page.goto(f"{demo_url}/login")  # signing in again, as another app would
        _at_review(page, live_url)
        page.get_by_label(re.compile("I accept this policy")).check()
        page.get_by_role("button", name="Accept and continue").click()
        expect(page.locator("#who")).to_contain_text(who.user_id)
    context.close()


def test_a_student_who_declines_is_not_signed_in(
    browser: Browser,
    demo_url: str,
    live_url: str,
    services: Services,
    shots_in: Callable[[str], Shots],
) -> None:
    shots = shots_in("policy-reacceptance")
    who = _active_student(services, "d")
    with published(services, *NEW):
        context = browser.new_context(viewport=VIEWPORT)
        page = _sign_in_to_demo(context, demo_url, who)
        _at_review(page, live_url)
        page.get_by_role("button", name="Decline and sign out").click()
        expect(page.locator("body")).to_contain_text(
            "You did not accept the new version of the campus IT policies, so you are not "
            "signed in."
        )
        shots.take(page, "declined")
        assert page.locator("#who").count() == 0
        assert not any(r.startswith("it-acceptable-use@2027-01:") for r in _records(services, who))
        with services.reads() as db:
            assert db.scalar(
                select(AuditEvent.id).where(
                    AuditEvent.subject == who.user_id, AuditEvent.action == "policy.declined"
                )
            )
        # Not signed in anywhere: the app's sign-in asks for the account again.
        page.goto(f"{demo_url}/")
        page.get_by_role("link", name="Sign in with UMPASS").click()
        expect(page.locator("#username")).to_be_visible()
        context.close()
