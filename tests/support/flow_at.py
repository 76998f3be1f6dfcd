"""A browser holding an activation flow put directly at one step, as the earlier steps would
have left it, so a step's test drives that step alone (one request per action).

The flow is stored through the app's own engine (`start_identified`, then `advance`, the
moves the router makes); its data is what `IdentifyStep.submit` builds from the real
Keycloak account and activation code (`tests/flows/test_identify.py` compares the two), plus
what each earlier step adds. "done" is reached by the password step's own write
(`activate`), so the account really is active. The browser gets the flow's cookie and a
CSRF token in its session, so a post needs no page fetched first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Flask, session
from flask_wtf.csrf import generate_csrf
from sqlalchemy import select
from werkzeug.test import TestResponse

from provider.contact_input import mask_email, mask_phone
from provider.flows.engine import FLOW_COOKIE, FlowEngine, FlowState
from provider.flows.runner import engine_extension
from provider.flows.state import ActivationData, OnRecord
from provider.flows.steps.activate import activate
from provider.keycloak import PHONE_NUMBER, PHONE_NUMBER_VERIFIED
from provider.policies import accepted_record
from provider.services import services as app_services
from provider.services import services as services_of
from provider.storage.models import ActivationCode
from tests.support.flow_client import FlowClient, StudentDetails
from tests.support.inbox import Inbox
from tests.support.policies import current_policies

# The password "done" is reached with (the realm's policy and the service's rules pass it).
DONE_PASSWORD = "orbit lantern velvet 1987"


def engine_of(app: Flask) -> FlowEngine[ActivationData]:
    return app.extensions[engine_extension("flow")]


class StepClient(FlowClient):
    """A test browser with a CSRF token in its session and, once identified, a flow."""

    def __init__(self, app: Flask, inbox: Inbox | None, flow_id: str | None = None) -> None:
        super().__init__(app.test_client(), inbox)
        self.engine = engine_of(app)
        self.flow_id = flow_id
        if flow_id is not None:
            self.client.set_cookie(FLOW_COOKIE, flow_id, path="/activate")
        field = app.config["WTF_CSRF_FIELD_NAME"]
        with app.test_request_context():
            self.token = generate_csrf()
            raw = session[field]
        with self.client.session_transaction() as browser_session:
            browser_session[field] = raw

    def submit(self, step: str, data: dict[str, str], *, follow: bool = False) -> TestResponse:
        """Post the step's form: one request (the token is in hand already)."""
        return self.client.post(
            f"/activate/{step}", data={"csrf_token": self.token, **data}, follow_redirects=follow
        )

    def flow(self) -> FlowState[ActivationData]:
        """The flow as stored now (what the next request would load)."""
        state = self.engine.load_or_start(self.flow_id)
        assert state.flow_id is not None and state.data is not None, "the flow is gone"
        return state

    @property
    def data(self) -> ActivationData:
        data = self.flow().data
        assert data is not None
        return data


def identified_data(app: Flask, who: StudentDetails) -> tuple[str, ActivationData]:
    """What the identify step stores for this enrolled, pending student: (user ID, data)."""
    svc = app_services(app)
    user = svc.keycloak.find_user(who.user_id)
    assert user is not None, f"{who.user_id} is not in Keycloak"
    with svc.reads() as db:
        code = db.scalars(
            select(ActivationCode).where(
                ActivationCode.user_id == who.user_id,
                ActivationCode.used_at.is_(None),
                ActivationCode.revoked_at.is_(None),
            )
        ).one()
    email_local = user.email.split("@")[0] if user.email else None
    return who.user_id, ActivationData(
        code_id=code.id,
        keycloak_id=user.id,
        on_record={
            "email": OnRecord(mask_email(user.email), user.email_verified),
            "phone": OnRecord(
                mask_phone(user.attribute(PHONE_NUMBER)),
                user.attribute(PHONE_NUMBER_VERIFIED) == "true",
            ),
        },
        hints=[w for w in (user.first_name, user.last_name, email_local) if w],
    )


def put_flow_at(
    app: Flask,
    inbox: Inbox | None,
    step: str,
    who: StudentDetails,
    data: dict[str, Any] | None = None,
) -> StepClient:
    """A new browser whose flow is at `step`, with `data` (fields of `ActivationData`)
    replacing what the earlier steps would have left."""
    engine = engine_of(app)
    if step not in engine.steps[1:]:
        raise ValueError(f"no flow can be put at {step!r} (identify starts without one)")
    user_id, collected = identified_data(app, who)
    index = engine.steps.index
    if index(step) > index("policies"):
        at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        collected.accepted_policies = [
            accepted_record(p, at) for p in current_policies(services_of(app))
        ]
    if index(step) > index("contacts"):
        _contacts_proven(app, collected)
    collected = dataclasses.replace(collected, **(data or {}))
    start = FlowState[ActivationData](flow_id=None, step=engine.steps[0])
    state = engine.start_identified(start, user_id=user_id, data=collected)
    stop_at = "password" if step == "done" else step
    while state.step != stop_at:
        engine.advance(state)
    if step == "done":
        activate(app_services(app), engine, state, DONE_PASSWORD)
        assert state.step == "done"
    assert state.flow_id is not None
    return StepClient(app, inbox, state.flow_id)


# The `flow_at` fixture (tests/conftest.py): `flow_at("contacts", student, data={...})`.
FlowAt = Callable[..., StepClient]


def _contacts_proven(app: Flask, data: ActivationData) -> None:
    """What the contacts step leaves when the student kept both contacts: each proven, in
    Keycloak and in the flow."""
    gateway = app_services(app).keycloak
    user = gateway.get_user(data.keycloak_id)
    if user.email:
        gateway.set_email(data.keycloak_id, user.email, verified=True)
    phone = user.attribute(PHONE_NUMBER)
    if phone:
        gateway.set_phone(data.keycloak_id, phone, verified=True)
    data.on_record = {c: OnRecord(r.masked, True) for c, r in data.on_record.items()}
