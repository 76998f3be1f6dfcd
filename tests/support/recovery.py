"""A browser for the recovery flow (the Flask test client, a CSRF token in its session),
and an active student to recover: activated through the activation's own write, both
contacts verified."""

from __future__ import annotations

from flask import Flask, session
from flask_wtf.csrf import generate_csrf
from werkzeug.test import TestResponse

from provider.flows.engine import FlowEngine, FlowState
from provider.flows.runner import engine_extension
from provider.recovery.flow import COOKIE
from provider.recovery.state import RecoveryData
from tests.support.flow_at import DONE_PASSWORD, put_flow_at
from tests.support.flow_client import StudentDetails
from tests.support.inbox import Inbox


def recovery_engine(app: Flask) -> FlowEngine[RecoveryData]:
    return app.extensions[engine_extension("recover")]


def activate_student(app: Flask, inbox: Inbox, who: StudentDetails) -> str:
    """Make the enrolled student active (contacts verified); returns the password."""
    put_flow_at(app, inbox, "done", who)
    return DONE_PASSWORD


class RecoveryClient:
    def __init__(self, app: Flask, inbox: Inbox | None = None) -> None:
        self.app = app
        self.client = app.test_client()
        self.inbox = inbox
        field = app.config["WTF_CSRF_FIELD_NAME"]
        with app.test_request_context():
            self.token = generate_csrf()
            raw = session[field]
        with self.client.session_transaction() as browser_session:
            browser_session[field] = raw

    def get(self, step: str = "", **kwargs: object) -> TestResponse:
        return self.client.get(f"/recover/{step}", **kwargs)  # type: ignore[arg-type]

    def post(self, step: str, data: dict[str, str], *, follow: bool = False) -> TestResponse:
        return self.client.post(
            f"/recover/{step}", data={"csrf_token": self.token, **data}, follow_redirects=follow
        )

    def start(self, account: str, channel: str = "email") -> TestResponse:
        # Identified clears the session; the token is put back for the next post.
        response = self.post("start", {"account": account, "channel": channel})
        self._keep_token()
        return response

    def resend(self) -> TestResponse:
        return self.post("code", {"action": "resend"})

    def code(self, code: str) -> TestResponse:
        return self.post("code", {"action": "verify", "code": code})

    def _keep_token(self) -> None:
        field = self.app.config["WTF_CSRF_FIELD_NAME"]
        with self.app.test_request_context():
            self.token = generate_csrf()
            raw = session[field]
        with self.client.session_transaction() as browser_session:
            browser_session[field] = raw

    @property
    def flow_id(self) -> str | None:
        cookie = self.client.get_cookie(COOKIE, path="/recover")
        return cookie.value if cookie else None

    def flow(self) -> FlowState[RecoveryData]:
        return recovery_engine(self.app).load_or_start(self.flow_id)


def put_recovery_at(
    app: Flask, inbox: Inbox | None, step: str, who: StudentDetails, **data: object
) -> RecoveryClient:
    """A browser whose recovery flow is at `step` for the (active) student, as the steps
    before it would have left it: the code proven for any step after "code"."""
    from provider.guards import lockout, verification
    from provider.services import services

    engine = recovery_engine(app)
    svc = services(app)
    user = svc.keycloak.find_user(who.user_id)
    assert user is not None, f"{who.user_id} is not in Keycloak"
    after_code = engine.steps.index(step) > engine.steps.index("code")
    collected = RecoveryData(
        channel="email",
        lock_key=lockout.recovery_key(who.user_id),
        budget_key=f"test-{who.user_id}",
        contact=verification.contact_hash(svc.hasher, "email", who.email),
        keycloak_id=user.id,
        proven=after_code,
        birth_date_proven=after_code and "birth-date" in engine.steps[: engine.steps.index(step)],
    )
    for name, value in data.items():
        setattr(collected, name, value)
    state = engine.start_identified(
        FlowState[RecoveryData](flow_id=None, step=engine.steps[0]),
        user_id=who.user_id,
        data=collected,
    )
    while state.step != step:
        engine.advance(state)
    browser = RecoveryClient(app, inbox)
    assert state.flow_id is not None
    browser.client.set_cookie(COOKIE, state.flow_id, path="/recover")
    return browser
