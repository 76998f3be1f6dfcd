"""The router (provider/flows/views.py) over flows put at a step: only the current step
answers, a submit that lost a race lands on the current page, reaching a step is written
for the funnel, and a withdrawn code ends the flow."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from keycloak import KeycloakAdmin
from sqlalchemy import select, update

from provider.activation_codes import issue_code, revoke_codes
from provider.date_input import form_fields
from provider.flows.engine import FlowEngine, FlowState
from provider.flows.state import ActivationData, PendingContact
from provider.keycloak import STATE_PENDING
from provider.policies import Policy, documents
from provider.services import Services
from provider.storage.models import ActivationCode, AuditEvent, Flow
from tests.support.flow_at import FlowAt, engine_of
from tests.support.flow_client import StudentDetails

PASSWORD = "orbit lantern velvet 1987"
Write = Callable[[FlowEngine[ActivationData], FlowState[ActivationData]], object]


def _policies() -> list[Policy]:
    # Field names are the same in every version.
    return [versions[-1] for versions in documents().values()]


def _funnel(services: Services, user_id: str) -> list[str]:
    with services.reads() as db:
        events = db.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.subject == user_id, AuditEvent.action.like("step.%"))
            .order_by(AuditEvent.id)
        )
        return list(events)


def _a_parallel_request_writes_first(app: Flask, monkeypatch: pytest.MonkeyPatch, write: Write):
    """The next request loads its flow, and then, before it writes, another request of the
    same flow (a double submit) writes it through the engine: the interleaving a race makes,
    made every time."""
    engine = engine_of(app)
    load = engine.load_or_start
    left = [write]

    def load_then_lose_the_race(flow_id: str | None, now: datetime | None = None, **kw):
        state = load(flow_id, now, **kw)
        if left and state.flow_id is not None:
            left.pop()(engine, load(flow_id))  # the other request, on its own copy
        return state

    monkeypatch.setattr(engine, "load_or_start", load_then_lose_the_race)


def test_any_other_step_sends_to_the_current_one_and_changes_nothing(
    flow_at: FlowAt, student: StudentDetails, services: Services, admin: KeycloakAdmin
) -> None:
    flow = flow_at("contacts", student)
    before = flow.flow().version
    everything = {
        "user_id": student.user_id,
        "activation_code": student.code,
        **form_fields(student.date_of_birth),
        "id_last4": student.id_last4,
        **{p.field_name: "y" for p in _policies()},
        "password": PASSWORD,
        "confirm": PASSWORD,
    }
    # Back to a step done already, on to one not reached yet, or to none at all.
    for name in ("identify", "policies", "password", "done", "nonsense"):
        shown = flow.client.get(f"/activate/{name}")
        assert shown.status_code == 302 and shown.location.endswith("/activate/contacts"), name
        posted = flow.submit(name, everything)
        assert posted.status_code == 302 and posted.location.endswith("/activate/contacts"), name
    state = flow.flow()
    assert (state.step, state.version) == ("contacts", before)
    assert state.data is not None and state.data.pending is None
    user = services.keycloak.find_user(student.user_id)
    assert user is not None and user.activation_state == STATE_PENDING
    assert admin.get_credentials(user.id) == []
    assert _funnel(services, student.user_id) == []


def test_a_double_submit_that_lost_the_race_lands_on_the_current_page(
    app: Flask,
    flow_at: FlowAt,
    student: StudentDetails,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A step's own write (`visit.save`) raises FlowConflict: the router shows the current
    page, and the write that came first stands."""
    masked = f"+853 ••••{student.phone[-4:]}"
    flow = flow_at(
        "contacts",
        student,
        data={"pending": {"phone": PendingContact(value=None, shown=masked, replaces=False)}},
    )
    before = flow.flow().version

    def first(engine: FlowEngine[ActivationData], other: FlowState[ActivationData]) -> None:
        assert other.data is not None and other.data.pending is not None
        other.data.pending["phone"].sent = True
        engine.save(other)

    _a_parallel_request_writes_first(app, monkeypatch, first)
    # "Change" would drop what is pending: it lost, so nothing of it is written.
    response = flow.submit("contacts", {"action": "change"})
    assert response.status_code == 302 and response.location.endswith("/activate/contacts")
    monkeypatch.undo()
    state = flow.flow()
    assert (state.step, state.version) == ("contacts", before + 1)
    assert state.data is not None and state.data.pending == {
        "phone": PendingContact(value=None, shown=masked, replaces=False, sent=True)
    }


def test_a_double_submit_that_was_moved_on_first_lands_on_the_next_step(
    app: Flask,
    flow_at: FlowAt,
    student: StudentDetails,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The engine's move on (`advance`) raises FlowConflict: the router shows where the
    other request took the flow, and counts nothing for the funnel a second time."""
    flow = flow_at("policies", student)
    before = flow.flow().version
    _a_parallel_request_writes_first(app, monkeypatch, lambda engine, other: engine.advance(other))
    response = flow.submit("policies", {p.field_name: "y" for p in _policies()})
    assert response.status_code == 302 and response.location.endswith("/activate/contacts")
    monkeypatch.undo()
    state = flow.flow()
    assert (state.step, state.version) == ("contacts", before + 1)
    assert _funnel(services, student.user_id) == []  # the one that moved it counts it


def test_reaching_a_step_is_written_for_the_funnel(
    flow_at: FlowAt, student: StudentDetails, services: Services
) -> None:
    flow = flow_at("policies", student)
    response = flow.submit("policies", {p.field_name: "y" for p in _policies()})
    assert response.location.endswith("/activate/contacts")
    assert _funnel(services, student.user_id) == ["step.contacts"]
    with services.reads() as db:
        event = db.scalars(
            select(AuditEvent).where(
                AuditEvent.subject == student.user_id, AuditEvent.action == "step.contacts"
            )
        ).one()
    assert (event.actor, event.detail) == ("student", {})


@pytest.mark.parametrize("how", ["revoked", "re-issued", "expired"])
def test_an_open_flow_ends_when_its_code_is_withdrawn(
    flow_at: FlowAt, student: StudentDetails, services: Services, how: str
) -> None:
    """The help desk revokes or re-issues the code (or it runs out) while a student is on
    a later step: their next request starts over, and nothing more is written."""
    flow = flow_at("contacts", student)
    now = datetime.now(UTC)
    with services.sessions.begin() as db:
        if how == "revoked":
            revoke_codes(db, student.user_id, now=now, actor="helpdesk:test")
        elif how == "re-issued":
            issue_code(db, services.hasher, student.user_id)
        else:
            db.execute(
                update(ActivationCode)
                .where(ActivationCode.user_id == student.user_id)
                .values(expires_at=now - timedelta(seconds=1))
            )
    response = flow.client.get("/activate/contacts", follow_redirects=True)
    body = response.get_data(as_text=True)
    assert "Your activation code was replaced or has expired, so we started again." in body
    assert "Step 1 of 5" in body
    with services.sessions() as db:
        assert db.scalars(select(Flow).where(Flow.user_id == student.user_id)).all() == []
