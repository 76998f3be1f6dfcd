"""The help desk's "back to pending" (issue 19): asked first with a reason, then the account
is pending, every session and refresh ends, downstream hears it once, after the
activation; the student activates again with a new code. A crash between Keycloak's
write and the service's record is finished by the desk's second answer."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import select

from provider.helpdesk import back_to_pending as pending
from provider.helpdesk import student as students
from provider.keycloak import PHONE_NUMBER, PHONE_NUMBER_VERIFIED
from provider.services import Services
from provider.storage.models import AuditEvent, OutboxEvent
from tests.conftest import KeycloakUnderTest, RealmUnderTest
from tests.support.console import Console
from tests.support.flow_at import DONE_PASSWORD
from tests.support.flow_client import StudentDetails
from tests.support.grants import add_client, password_grant, refresh_grant
from tests.support.inbox import Inbox
from tests.support.realm_changes import RealmChanges
from tests.support.recovery import activate_student
from tests.support.students import enrol_student

pytestmark = pytest.mark.keycloak

BUTTON = "Set back to pending"


@pytest.fixture(scope="module")
def desk_member(module_staff: RealmChanges) -> str:
    """A help-desk member (not an admin): the desk may do this."""
    return module_staff.add_staff("activation-helpdesk").username


@pytest.fixture
def activated(app: Flask, inbox: Inbox, services: Services) -> StudentDetails:
    """Activated through the real flow, so the service's record says "activated"."""
    who = enrol_student(services, "p")
    activate_student(app, inbox, who)
    return who


def _events(services: Services, user_id: str) -> list[tuple[str, dict[str, Any]]]:
    with services.sessions() as db:
        rows = db.execute(
            select(OutboxEvent.type, OutboxEvent.payload)
            .where(OutboxEvent.user_id == user_id)
            .order_by(OutboxEvent.id)
        ).all()
    return [(kind, payload) for kind, payload in rows]


def _audited(services: Services, user_id: str) -> list[dict[str, Any]]:
    with services.sessions() as db:
        return [
            dict(detail or {})
            for detail in db.scalars(
                select(AuditEvent.detail).where(
                    AuditEvent.subject == user_id, AuditEvent.action == pending.ACTION
                )
            )
        ]


def _state(services: Services, user_id: str) -> str | None:
    account = services.keycloak.find_user(user_id)
    assert account is not None
    return account.activation_state


def test_the_desk_sets_an_account_back_to_pending_and_the_student_activates_again(
    keycloak_server: KeycloakUnderTest,
    realm: RealmUnderTest,
    realm_changes: RealmChanges,
    live_url: str,
    app: Flask,
    inbox: Inbox,
    services: Services,
    desk_member: str,
    activated: StudentDetails,
) -> None:
    who = activated
    page = f"/helpdesk/students/{who.user_id}"
    action = f"{page}/pending"
    client_id = add_client(realm_changes, directAccessGrantsEnabled=True)["clientId"]
    signed_in = password_grant(
        keycloak_server.url, realm.name, client_id, who.user_id, password=DONE_PASSWORD
    )
    assert signed_in.status_code == 200, signed_in.text
    refresh_token = signed_in.json()["refresh_token"]

    before = services.keycloak.find_user(who.user_id)
    assert before is not None and before.email_verified
    assert before.attribute(PHONE_NUMBER_VERIFIED) == "true"

    desk = Console(live_url, desk_member)
    assert BUTTON in desk.get(page).text
    # The question first: nothing changes until it is answered with a reason.
    asked = desk.post(action, page)
    assert asked.status_code == 200 and f"Set {who.user_id} back to pending?" in asked.text
    for form in ({"confirm": "yes"}, {"confirm": "yes", "reason": "because"}):
        refused = desk.post(action, page, **form)
        assert refused.status_code == 400
        assert "Choose why the account goes back to pending." in refused.text
    assert _state(services, who.user_id) == "active"
    assert [kind for kind, _ in _events(services, who.user_id)] == ["student.activated"]

    done = desk.post(action, page, follow=False, confirm="yes", reason="wrong_person")
    assert done.status_code == 303 and done.headers["Location"].endswith(page)
    assert _state(services, who.user_id) == "pending"
    # The contacts stay, unproven: none of them opens recovery until proven again.
    after = services.keycloak.find_user(who.user_id)
    assert after is not None and (after.email, after.attribute(PHONE_NUMBER)) == (
        before.email,
        before.attribute(PHONE_NUMBER),
    )
    assert not after.email_verified and after.attribute(PHONE_NUMBER_VERIFIED) == "false"
    # The session ended: its refresh token yields nothing, and no new sign-in either.
    refreshed = refresh_grant(keycloak_server.url, realm.name, client_id, refresh_token)
    assert refreshed.status_code == 400 and "access_token" not in refreshed.text
    again = password_grant(
        keycloak_server.url, realm.name, client_id, who.user_id, password=DONE_PASSWORD
    )
    assert again.status_code in (400, 401) and "access_token" not in again.text
    # Downstream hears it once, after the activation, with the reason and no secret.
    told = _events(services, who.user_id)
    assert [kind for kind, _ in told] == ["student.activated", "student.back_to_pending"]
    payload = told[1][1]
    assert payload["reason"] == "wrong_person" and payload["activation_state"] == "pending"
    assert payload["by"] == "helpdesk" and DONE_PASSWORD not in str(payload)
    assert _audited(services, who.user_id) == [{"reason": "wrong_person"}]

    # Now pending: a new code is offered, not this again; a stale form changes nothing.
    shown = desk.get(page).text
    assert BUTTON not in shown and "Issue a new code" in shown
    assert "Help desk set the account back to pending" in shown
    assert "given to the wrong person" in shown
    stale = desk.post(action, page, follow=False, confirm="yes", reason="wrong_person")
    assert stale.status_code == 303
    assert len(_events(services, who.user_id)) == 2 and len(_audited(services, who.user_id)) == 1

    # The right student activates again with a new code from the desk.
    who.code = students.reissue(services, who.user_id, desk_member).code
    activate_student(app, inbox, who)
    assert _state(services, who.user_id) == "active"
    assert [kind for kind, _ in _events(services, who.user_id)] == [
        "student.activated",
        "student.back_to_pending",
        "student.activation_code_reissued",
        "student.activated",
    ]


def test_a_crash_before_the_record_is_finished_by_answering_again(
    live_url: str,
    services: Services,
    desk_member: str,
    activated: StudentDetails,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    who = activated
    page = f"/helpdesk/students/{who.user_id}"
    view = students.look_up(services, who.user_id)

    def crash(*args: object, **kwargs: object) -> str:
        raise RuntimeError("the process died here")

    # Keycloak's write lands, then the record's transaction dies: the account is pending
    # (the safe side), and no event or audit says so yet.
    with monkeypatch.context() as patched:
        patched.setattr(pending.outbox, "record", crash)
        with pytest.raises(RuntimeError):
            pending.set_back_to_pending(services, view, "someone", "identity_in_doubt")
    assert _state(services, who.user_id) == "pending"
    assert [kind for kind, _ in _events(services, who.user_id)] == ["student.activated"]
    assert _audited(services, who.user_id) == []

    # The desk's page still offers it, and says why; the answer finishes the record, once.
    desk = Console(live_url, desk_member)
    assert BUTTON in desk.get(page).text
    asked = desk.post(f"{page}/pending", page)
    assert "the change was not recorded here" in asked.text
    desk.post(f"{page}/pending", page, confirm="yes", reason="identity_in_doubt")
    assert _state(services, who.user_id) == "pending"
    assert [kind for kind, _ in _events(services, who.user_id)] == [
        "student.activated",
        "student.back_to_pending",
    ]
    assert _audited(services, who.user_id) == [{"reason": "identity_in_doubt"}]
    assert BUTTON not in desk.get(page).text


def test_a_pending_account_is_not_offered_and_a_post_changes_nothing(
    live_url: str, services: Services, desk_member: str
) -> None:
    who = enrol_student(services, "q")
    page = f"/helpdesk/students/{who.user_id}"
    desk = Console(live_url, desk_member)
    assert BUTTON not in desk.get(page).text
    answer = desk.post(f"{page}/pending", page, confirm="yes", reason="student_asked")
    assert "This account is not active" in answer.text
    assert _events(services, who.user_id) == [] and _audited(services, who.user_id) == []
    # Without the form's CSRF token: refused before anything is read.
    bare = requests.post(
        f"{live_url}{page}/pending",
        data={"confirm": "yes", "reason": "student_asked"},
        cookies=desk.session.cookies,
        timeout=30,
        allow_redirects=False,
    )
    assert bare.status_code == 400
