"""A recovery flow put directly at a step after its code was proven, as the start and code
steps would have left it, so a test of the writes drives only the last submit; and the
same flow over real HTTP, for the replicas of a race.

The flow is stored through the app's own engine (`start_identified`, then `advance`, the
moves the router makes), with the data `StartStep.submit` and `CodeStep.verify` build for
an account that can be recovered (tests/recovery/test_walk.py walks them for real).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import Flask

from provider.flows.engine import FlowState
from provider.flows.state import Channel
from provider.recovery import sending
from provider.recovery.flow import COOKIE
from provider.recovery.state import RecoveryData
from provider.recovery.steps.start import lock_key
from provider.services import services as app_services
from tests.support.fault_proxy import FaultProxy
from tests.support.flow_client import StudentDetails, csrf_token
from tests.support.inbox import Inbox
from tests.support.recovery import RecoveryClient, recovery_engine
from tests.support.recovery_record import RecoveryWrites
from tests.support.replicas import HttpBrowser, Replica, Submit

AFTER_PROOF = ("choose", "new-password")

# The recovery's writes as they reach Keycloak (method, path).
WRITES = {
    "set-password": ("PUT", "/admin/realms/{realm}/users/{id}/reset-password"),
    "sign-out": ("POST", "/admin/realms/{realm}/users/{id}/logout"),
    "lift-lock": ("DELETE", "/admin/realms/{realm}/attack-detection/brute-force/users/{id}"),
}


def write_request(write: str, realm: str, keycloak_id: str) -> tuple[str, str]:
    method, path = WRITES[write]
    return method, path.format(realm=realm, id=keycloak_id)


def put_recovery_at(
    app: Flask, step: str, who: StudentDetails, *, channel: Channel = "email"
) -> str:
    """Store a proven recovery flow of `who` at `step`; returns its id (the cookie)."""
    if step not in AFTER_PROOF:
        raise ValueError(f"a recovery flow is put only after its proof, not at {step!r}")
    svc = app_services(app)
    user = svc.keycloak.find_user(who.user_id)
    assert user is not None, f"{who.user_id} is not in Keycloak"
    contact = who.email if channel == "email" else who.phone
    data = RecoveryData(
        channel=channel,
        lock_key=lock_key(who.user_id),
        budget_key=sending.budget_key(svc, who.user_id),
        contact=sending.contact_of(svc, channel, contact),
        keycloak_id=user.id,
        proven=True,
    )
    engine = recovery_engine(app)
    start = FlowState[RecoveryData](flow_id=None, step=engine.steps[0])
    state = engine.start_identified(start, user_id=who.user_id, data=data)
    while state.step != step:
        engine.advance(state)
    assert state.flow_id is not None
    return state.flow_id


def recovery_at(
    app: Flask,
    inbox: Inbox | None,
    step: str,
    who: StudentDetails,
    *,
    channel: Channel = "email",
) -> RecoveryClient:
    """A test browser holding a proven recovery flow of `who` at `step`."""
    return holding(RecoveryClient(app, inbox), put_recovery_at(app, step, who, channel=channel))


def holding(browser: RecoveryClient, flow_id: str) -> RecoveryClient:
    """`browser` holds the recovery flow `flow_id` (a second tab of the same flow)."""
    browser.client.set_cookie(COOKIE, flow_id, path="/recover")
    return browser


def hold_recovery(browser: HttpBrowser, flow_id: str) -> None:
    """An HTTP browser holds a stored recovery flow, as the browser that reached it would."""
    host = urlsplit(browser.base_url).hostname or ""
    browser.session.cookies.set(COOKIE, flow_id, domain=host, path="/recover")


def recovery_submit(
    browser: HttpBrowser, replica_url: str, step: str, form: dict[str, str]
) -> Submit:
    """One post of `step`'s form to a replica, its CSRF token read from the replica's page."""
    browser.base_url = replica_url
    page = browser.get(f"/recover/{step}")
    assert page.status_code == 200, f"the replica did not show {step}: {page.status_code}"
    return Submit(
        replica_url,
        f"/recover/{step}",
        browser.cookie_header(),
        {"csrf_token": csrf_token(page), **form},  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class CountedReplicas:
    """Two service replicas whose every Keycloak request passes a proxy that logs it."""

    replicas: tuple[Replica, Replica]
    keycloak: FaultProxy  # `requests`: "METHOD /path" of each, in order

    def sent(self, method: str, path: str) -> int:
        return self.keycloak.requests.count(f"{method} {path}")

    def writes_sent(self, realm: str, keycloak_id: str) -> RecoveryWrites:
        """The recovery's writes to this account the replicas sent (applied or not)."""

        def sent(write: str) -> int:
            return self.sent(*write_request(write, realm, keycloak_id))

        return RecoveryWrites(
            passwords_set=sent("set-password"),
            sign_outs=sent("sign-out"),
            locks_lifted=sent("lift-lock"),
        )
