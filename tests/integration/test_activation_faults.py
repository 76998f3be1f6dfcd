"""Nothing lost: faults at each write of the activation, then a retry; and 20 parallel
submits activating exactly once. Against the real Keycloak; `responses` only injects the
503 a real server will not give on demand."""

from __future__ import annotations

import dataclasses
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta

import pytest
import responses
from flask import Flask
from keycloak import KeycloakAdmin
from sqlalchemy import select

from provider.flows import activate as activation
from provider.keycloak import STATE_ACTIVE, STATE_PENDING, KeycloakGateway
from provider.services import Services
from provider.services import services as app_services
from provider.storage.models import ActivationCode, Flow
from tests.support.flow_client import FlowClient, StudentDetails, csrf_token
from tests.support.inbox import Inbox
from tests.support.keycloak_login import sign_in
from tests.support.realm_changes import RealmChanges
from tests.support.students import enrol_student

FIRST = "orbit lantern velvet 1987"
SECOND = "copper meadow whistle 2031"


@pytest.fixture
def student(services: Services) -> StudentDetails:
    return enrol_student(
        services,
        "f",
        first_name="Lou",
        last_name="Ip",
        date_of_birth=date(2005, 9, 1),
        id_number="D7654321",
    )


@pytest.fixture
def writes(gateway: KeycloakGateway, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each activation call reached Keycloak with a write (True) or found the
    account already active (False)."""
    seen: list[bool] = []
    original = gateway.activate

    def counting(*args, **kwargs):
        wrote = original(*args, **kwargs)
        seen.append(wrote)
        return wrote

    monkeypatch.setattr(gateway, "activate", counting)
    return seen


@pytest.fixture
def at_password(app: Flask, student: StudentDetails, inbox: Inbox) -> FlowClient:
    flow = FlowClient(app.test_client(), inbox)
    flow.to_password_step(student)
    return flow


def _state(services: Services, user_id: str) -> tuple[str, bool]:
    user = services.keycloak.find_user(user_id)
    assert user is not None
    with services.sessions() as db:
        used = db.scalars(
            select(ActivationCode.used_at).where(ActivationCode.user_id == user_id)
        ).all()
    return user.activation_state or "", any(u is not None for u in used)


def _signs_in(services: Services, user_id: str, password: str) -> bool:
    kc = services.settings.keycloak
    return sign_in(kc.url, kc.realm, user_id, password).ok


def _expire_claim(services: Services, user_id: str) -> None:
    """What the passing of CLAIM_LEASE does after a request died mid-activation."""
    with services.sessions.begin() as db:
        flow = db.scalars(select(Flow).where(Flow.user_id == user_id)).one()
        old = (datetime.now(UTC) - activation.CLAIM_LEASE - timedelta(seconds=1)).isoformat()
        flow.state = {**flow.state, "claim": old}


def test_keycloak_503_on_the_activation_write(
    at_password: FlowClient, student: StudentDetails, services: Services, admin: KeycloakAdmin
) -> None:
    kc = services.settings.keycloak
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add(
            responses.PUT,
            re.compile(rf"{re.escape(kc.url)}/admin/realms/[^/]+/users/[^/?]+$"),
            status=503,
        )
        mock.add_passthru(kc.url)
        response = at_password.set_password(FIRST)
    assert response.status_code == 503
    assert "Nothing has been changed" in response.get_data(as_text=True)
    user = services.keycloak.find_user(student.user_id)
    assert user is not None and user.activation_state == STATE_PENDING
    assert admin.get_credentials(user.id) == []
    # Refresh and retry works at once: the claim was given back.
    assert at_password.set_password(FIRST).location.endswith("/activate/done")
    state, used = _state(services, student.user_id)
    assert (state, used) == (STATE_ACTIVE, True)
    assert _signs_in(services, student.user_id, FIRST)


def test_crash_after_the_keycloak_write_then_retry(
    at_password: FlowClient,
    student: StudentDetails,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def crash(*_args: object, **_kwargs: object) -> bool:
        raise RuntimeError("process died before consuming the code")

    monkeypatch.setattr(activation, "consume_code", crash)
    with pytest.raises(RuntimeError):
        at_password.set_password(FIRST)
    monkeypatch.undo()
    state, used = _state(services, student.user_id)
    assert (state, used) == (STATE_ACTIVE, False)  # active with its password: never half
    assert _signs_in(services, student.user_id, FIRST)
    # Within the lease another submit is told to wait; after it, the retry finishes.
    assert at_password.set_password(SECOND).status_code == 409
    _expire_claim(services, student.user_id)
    assert at_password.set_password(SECOND).location.endswith("/activate/done")
    state, used = _state(services, student.user_id)
    assert (state, used) == (STATE_ACTIVE, True)
    assert _signs_in(services, student.user_id, SECOND)  # the password typed last counts
    assert not _signs_in(services, student.user_id, FIRST)


def test_crash_after_consuming_the_code_then_retry(
    at_password: FlowClient,
    student: StudentDetails,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = activation.FlowEngine.save

    def save(self, state, *, step=None, now=None):
        if step == "done":
            raise RuntimeError("process died before the flow was marked done")
        return original(self, state, step=step, now=now)

    monkeypatch.setattr(activation.FlowEngine, "save", save)
    with pytest.raises(RuntimeError):
        at_password.set_password(FIRST)
    monkeypatch.undo()
    state, used = _state(services, student.user_id)
    assert (state, used) == (STATE_ACTIVE, True)
    _expire_claim(services, student.user_id)
    assert at_password.set_password(FIRST).location.endswith("/activate/done")
    assert "Your account is active" in at_password.page("done").get_data(as_text=True)
    assert _signs_in(services, student.user_id, FIRST)


def test_keycloak_down_at_the_last_step_then_retry(
    app: Flask,
    at_password: FlowClient,
    student: StudentDetails,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
    gateway: KeycloakGateway,
) -> None:
    settings = services.settings.keycloak
    down = KeycloakGateway(dataclasses.replace(settings, url="http://127.0.0.1:9"))
    token = csrf_token(at_password.page("password"))  # the page was open before the outage
    monkeypatch.setattr(app_services(app), "keycloak", down)
    response = at_password.client.post(
        "/activate/password", data={"csrf_token": token, "password": FIRST, "confirm": FIRST}
    )
    assert response.status_code == 503
    monkeypatch.undo()
    assert _state(services, student.user_id) == (STATE_PENDING, False)
    assert at_password.set_password(FIRST).location.endswith("/activate/done")


def test_twenty_parallel_submits_activate_exactly_once(
    app: Flask,
    at_password: FlowClient,
    student: StudentDetails,
    services: Services,
    writes: list[bool],
) -> None:
    token = csrf_token(at_password.page("password"))
    cookies = {c.key: c.value for c in at_password.client._cookies.values()}

    def submit(_: int) -> int:
        client = app.test_client()
        for key, value in cookies.items():
            path = "/activate" if key == "umpass_flow" else "/"
            client.set_cookie(key, value, path=path)
        return client.post(
            "/activate/password", data={"csrf_token": token, "password": FIRST, "confirm": FIRST}
        ).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(submit, range(20)))
    assert writes.count(True) == 1, writes
    assert set(statuses) <= {302, 409}, statuses
    assert statuses.count(302) >= 1
    state, used = _state(services, student.user_id)
    assert (state, used) == (STATE_ACTIVE, True)
    assert _signs_in(services, student.user_id, FIRST)


def test_a_refused_flow_cannot_later_overwrite_another_flows_activation(
    app: Flask,
    student: StudentDetails,
    services: Services,
    admin: KeycloakAdmin,
    inbox: Inbox,
    realm_changes: RealmChanges,
) -> None:
    first_tab = FlowClient(app.test_client(), inbox)
    first_tab.to_password_step(student)
    second_tab = FlowClient(app.test_client(), inbox)
    second_tab.to_password_step(student)
    policy = admin.get_realm(services.settings.keycloak.realm)["passwordPolicy"]
    with realm_changes.realm_settings({"passwordPolicy": f"{policy} and specialChars(5)"}):
        refused = first_tab.set_password(FIRST)  # Keycloak refuses: nothing written
    assert refused.status_code == 400
    assert second_tab.set_password(SECOND).location.endswith("/activate/done")
    late = first_tab.set_password(FIRST)
    assert late.status_code == 409
    assert "cannot be completed" in late.get_data(as_text=True)
    assert _signs_in(services, student.user_id, SECOND)
    assert not _signs_in(services, student.user_id, FIRST)


def test_two_tabs_racing_activate_once(
    app: Flask,
    student: StudentDetails,
    services: Services,
    writes: list[bool],
    inbox: Inbox,
) -> None:
    tabs = [FlowClient(app.test_client(), inbox) for _ in range(4)]
    for tab in tabs:
        tab.to_password_step(student)
    tokens = [csrf_token(tab.page("password")) for tab in tabs]

    def submit(index: int) -> int:
        return (
            tabs[index]
            .client.post(
                "/activate/password",
                data={
                    "csrf_token": tokens[index],
                    "password": f"{FIRST} {index}",
                    "confirm": f"{FIRST} {index}",
                },
            )
            .status_code
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(pool.map(submit, range(4)))
    assert writes.count(True) == 1, (writes, statuses)
    assert statuses.count(302) == 1, statuses
    winner = statuses.index(302)
    assert _signs_in(services, student.user_id, f"{FIRST} {winner}")
