"""The student activation flow against the real Keycloak, through the web layer."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from keycloak import KeycloakAdmin
from sqlalchemy import select, update

from provider.date_input import form_fields
from provider.keycloak import ACCEPTED_POLICIES, STATE_ACTIVE, STATE_PENDING
from provider.services import Services
from provider.storage.engine import bind_of
from provider.storage.models import ActivationCode, Flow, IdentifyLockout, PolicyAcceptance
from tests.support.addresses import fresh_address
from tests.support.flow_at import FlowAt
from tests.support.flow_client import FlowClient, StudentDetails
from tests.support.inbox import Inbox
from tests.support.keycloak_login import sign_in
from tests.support.students import enrol_student

PASSWORD = "orbit lantern velvet 1987"


@pytest.fixture
def student(services: Services) -> StudentDetails:
    return enrol_student(services, "a")


@pytest.fixture
def flow(app: Flask, inbox: Inbox) -> FlowClient:
    return FlowClient(app.test_client(), inbox)


def _kc_user(services: Services, user_id: str):
    user = services.keycloak.find_user(user_id)
    assert user is not None
    return user


def test_whole_flow_activates_and_the_password_signs_in(
    flow: FlowClient, student: StudentDetails, services: Services, admin: KeycloakAdmin
) -> None:
    start = flow.client.get("/activate/")
    assert start.status_code == 302 and start.location.endswith("/activate/identify")
    page = flow.page("identify").get_data(as_text=True)
    assert "Step 1 of 5" in page
    # Nothing is stored for an anonymous visitor: no flow cookie yet.
    assert flow.client.get_cookie("umpass_flow", path="/activate") is None
    session_before = flow.client.get_cookie("umpass_session")
    assert session_before is not None

    assert flow.identify(student).location.endswith("/activate/policies")
    cookie = flow.client.get_cookie("umpass_flow", path="/activate")
    assert cookie is not None and len(cookie.value) >= 32  # 192 random bits
    assert cookie.http_only and cookie.same_site == "Lax"
    session_after = flow.client.get_cookie("umpass_session")
    assert session_after is None or session_after.value != session_before.value  # renewed
    assert "Step 2 of 5" in flow.page("policies").get_data(as_text=True)
    assert flow.accept_policies().location.endswith("/activate/contacts")
    contacts = flow.page("contacts").get_data(as_text=True)
    assert f"+853 ••••{student.phone[-4:]}" in contacts and "a•••@example.edu" in contacts
    assert "Not confirmed yet." in contacts
    assert "only through a contact confirmed with a code" in contacts
    confirmed = flow.confirm_contacts(email=student.email, phone=student.phone)
    assert confirmed.location.endswith("/activate/password")
    password_page = flow.page("password").get_data(as_text=True)
    assert "Use at least 12 characters" in password_page  # the realm's policy, read live

    # Still pending, no password, until the last step commits.
    user = _kc_user(services, student.user_id)
    assert user.activation_state == STATE_PENDING
    assert admin.get_credentials(user.id) == []

    done = flow.set_password(PASSWORD)
    assert done.location.endswith("/activate/done"), done.get_data(as_text=True)[:400]
    assert "Your account is active" in flow.page("done").get_data(as_text=True)
    user = _kc_user(services, student.user_id)
    assert user.activation_state == STATE_ACTIVE
    assert user.attribute("activated_at")
    accepted = user.attributes[ACCEPTED_POLICIES]
    assert any(a.startswith("it-acceptable-use@2026-09:") for a in accepted)
    assert admin.get_user(user.id)["requiredActions"] == []
    result = sign_in(
        services.settings.keycloak.url, services.settings.keycloak.realm, student.user_id, PASSWORD
    )
    assert result.ok

    # The audit trail tells the story without a secret in it.
    from provider.storage.models import AuditEvent

    with services.sessions() as db:
        # In the order they were written: without ORDER BY, PostgreSQL returns rows in the
        # order it finds them, which after other tests' deletes need not be that.
        events = (
            db.query(AuditEvent)
            .filter(AuditEvent.subject == student.user_id)
            .order_by(AuditEvent.id)
            .all()
        )
    assert [e.action for e in events] == [
        "code.issued",
        "identify.ok",
        "step.contacts",  # steps reached, for the activation funnel
        "step.password",
        "account.activated",
        "policy.accepted",  # the evidence, one per policy, with the code consumed
        "policy.accepted",
    ]
    trail = repr([(e.actor, e.action, e.detail) for e in events])
    assert student.code not in trail and "2006-02-28" not in trail and "4567" not in trail
    # The service's evidence is what the account holds, to the second.
    with services.sessions() as db:
        kept = db.scalars(
            select(PolicyAcceptance).where(PolicyAcceptance.user_id == student.user_id)
        )
        evidence = sorted(
            f"{r.policy_id}@{r.version}:"
            + r.accepted_at.isoformat(timespec="seconds").replace("+00:00", "Z")
            for r in kept
        )
    assert evidence == sorted(accepted)

    # The code is spent: a replay is the generic failure.
    replay = FlowClient(flow.client.application.test_client()).identify(student)
    assert replay.status_code == 400
    assert "We could not match those details" in replay.get_data(as_text=True)


# Every kind of identify failure side by side, through the real server (status, page,
# headers, cookies): tests/integration/test_identify_uniformity.py.


def _failure_body(response) -> str:
    body = response.get_data(as_text=True)
    body = re.sub(r'name="csrf_token" type="hidden" value="[^"]+"', "", body)
    return re.sub(r'value="[^"]*"', "", body)  # what the student typed is echoed back


def test_lockout_after_five_failures_then_expiry(
    app: Flask, student: StudentDetails, services: Services
) -> None:
    for _ in range(5):
        assert FlowClient(app.test_client()).identify(student, id_last4="0000").status_code == 400
    locked = FlowClient(app.test_client()).identify(student)  # even the right details
    assert locked.status_code == 429
    assert "Too many attempts for this user ID" in locked.get_data(as_text=True)
    # A user ID that does not exist locks the same way.
    for _ in range(5):
        FlowClient(app.test_client()).identify(student, user_id="zz11111")
    ghost = FlowClient(app.test_client()).identify(student, user_id="zz11111")
    assert ghost.status_code == 429
    assert _failure_body(ghost).replace("zz11111", "") == _failure_body(locked).replace(
        student.user_id, ""
    )
    # The lock runs out: then the right details work.
    with services.sessions.begin() as db:
        db.execute(
            update(IdentifyLockout)
            .where(IdentifyLockout.user_id == student.user_id)
            .values(locked_until=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert FlowClient(app.test_client()).identify(student).status_code == 302
    assert _kc_user(services, student.user_id).activation_state == STATE_PENDING


def test_steps_cannot_be_skipped(
    flow: FlowClient, student: StudentDetails, services: Services
) -> None:
    for step in ("policies", "contacts", "password", "done"):
        response = flow.client.get(f"/activate/{step}")
        assert response.status_code == 302 and response.location.endswith("/activate/identify")
    token_page = flow.page("identify")
    from tests.support.flow_client import csrf_token

    posted = flow.client.post(
        "/activate/password",
        data={"csrf_token": csrf_token(token_page), "password": PASSWORD, "confirm": PASSWORD},
    )
    assert posted.status_code == 302 and posted.location.endswith("/activate/identify")
    assert flow.identify(student).status_code == 302
    # Identified, but the policies are not accepted yet: no jumping to the password.
    assert flow.client.get("/activate/password").location.endswith("/activate/policies")
    assert flow.client.get("/activate/identify").location.endswith("/activate/policies")
    assert _kc_user(services, student.user_id).activation_state == STATE_PENDING


def test_missing_csrf_token_is_refused_and_changes_nothing(
    flow: FlowClient, student: StudentDetails, services: Services
) -> None:
    flow.page("identify")
    response = flow.client.post(
        "/activate/identify",
        data={
            "user_id": student.user_id,
            "activation_code": student.code,
            **form_fields(student.date_of_birth),
            "id_last4": student.id_last4,
        },
    )
    assert response.status_code == 400
    assert "Nothing was changed" in response.get_data(as_text=True)
    with services.sessions() as db:
        assert db.get(IdentifyLockout, student.user_id) is None  # not even counted


def test_expired_flow_starts_again_with_a_message(
    flow_at: FlowAt, student: StudentDetails, services: Services
) -> None:
    flow = flow_at("policies", student)
    with services.sessions.begin() as db:
        db.execute(
            update(Flow)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            .where(Flow.user_id == student.user_id)
        )
    response = flow.client.get("/activate/policies", follow_redirects=True)
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert "Your session timed out, so we started again" in body
    assert "Step 1 of 5" in body


def test_unknown_flow_cookie_is_a_fresh_start(app: Flask) -> None:
    client = app.test_client()
    client.set_cookie("umpass_flow", "made-up-value", path="/activate")
    response = client.get("/activate/identify")
    assert response.status_code == 200
    assert "Step 1 of 5" in response.get_data(as_text=True)
    assert client.get_cookie("umpass_flow", path="/activate") is None  # cleared


def test_closing_the_browser_and_coming_back_resumes(
    app: Flask, flow_at: FlowAt, student: StudentDetails
) -> None:
    flow = flow_at("contacts", student)
    cookie = flow.client.get_cookie("umpass_flow", path="/activate").value
    later = app.test_client()  # a new browser session with only the flow cookie restored
    later.set_cookie("umpass_flow", cookie, path="/activate")
    assert later.get("/activate/").location.endswith("/activate/contacts")


def test_identify_attempts_are_limited_per_client_address(
    app: Flask, student: StudentDetails, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "UMPASS_IDENTIFY_LIMIT", "3 per minute")
    address = {"REMOTE_ADDR": fresh_address()}  # a WSGI value only
    codes = []
    for _ in range(4):
        client = FlowClient(app.test_client())
        client.client.environ_base.update(address)
        codes.append(client.identify(student, user_id=f"zz{secrets.token_hex(3)[:5]}").status_code)
    assert codes == [400, 400, 400, 429]
    # Another address is not affected, and neither are GETs from the limited one.
    other = FlowClient(app.test_client())
    assert other.identify(student, id_last4="0000").status_code == 400


def test_ipv6_clients_share_one_budget_per_64(
    app: Flask, student: StudentDetails, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subscriber holds a whole /64: new addresses in it buy no new attempts."""
    monkeypatch.setitem(app.config, "UMPASS_IDENTIFY_LIMIT", "3 per minute")
    prefix = f"2001:db8:{secrets.randbelow(0xFFFF):x}:{secrets.randbelow(0xFFFF):x}"
    codes = []
    for host in range(1, 5):
        client = FlowClient(app.test_client())
        client.client.environ_base["REMOTE_ADDR"] = f"{prefix}::{host:x}"
        codes.append(client.identify(student, user_id=f"zz{secrets.token_hex(3)[:5]}").status_code)
    assert codes == [400, 400, 400, 429]
    neighbour = FlowClient(app.test_client())  # the next /64 is someone else
    neighbour.client.environ_base["REMOTE_ADDR"] = (
        f"{prefix[:-1]}{'0' if prefix[-1] != '0' else '1'}::1"
    )
    assert neighbour.identify(student, id_last4="0000").status_code == 400


def test_forwarded_for_is_ignored_without_a_configured_proxy(
    app: Flask, student: StudentDetails, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "UMPASS_IDENTIFY_LIMIT", "2 per minute")
    address = {"REMOTE_ADDR": f"198.51.100.{secrets.randbelow(250) + 1}"}
    codes = []
    for n in range(3):
        client = FlowClient(app.test_client())
        client.client.environ_base.update(address)
        # A client cannot dodge the limit by claiming another address.
        client.client.environ_base["HTTP_X_FORWARDED_FOR"] = f"203.0.113.{n}"
        codes.append(client.identify(student, user_id="zz22222").status_code)
    assert codes == [400, 400, 429]


def test_not_you_start_again_forgets_the_flow(
    flow_at: FlowAt, student: StudentDetails, services: Services
) -> None:
    from tests.support.flow_client import csrf_token

    flow = flow_at("policies", student)
    page = flow.page("policies")
    assert "Not you? Start again" in page.get_data(as_text=True)
    old_cookie = flow.client.get_cookie("umpass_flow", path="/activate").value
    response = flow.client.post("/activate/restart", data={"csrf_token": csrf_token(page)})
    assert response.status_code == 302 and response.location.endswith("/activate/identify")
    assert flow.client.get_cookie("umpass_flow", path="/activate") is None
    # The old cookie, copied before, resumes nothing.
    other = FlowClient(flow.client.application.test_client())
    other.client.set_cookie("umpass_flow", old_cookie, path="/activate")
    assert other.client.get("/activate/policies").location.endswith("/activate/identify")
    assert _kc_user(services, student.user_id).activation_state == STATE_PENDING


def test_the_final_claim_refuses_an_expired_code(
    services: Services, student: StudentDetails
) -> None:
    from provider.flows.steps.activate import _claim_code

    now = datetime.now(UTC)
    with services.sessions.begin() as db:
        code = db.scalars(
            select(ActivationCode).where(
                ActivationCode.user_id == student.user_id, ActivationCode.revoked_at.is_(None)
            )
        ).one()
        code.expires_at = now - timedelta(seconds=1)
        code_id = code.id
    with bind_of(services.sessions).begin() as conn:
        assert _claim_code(conn, code_id, "flow-key", now) is None
    with services.sessions() as db:
        assert db.get(ActivationCode, code_id).claimed_by is None
