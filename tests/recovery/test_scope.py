"""Only active students the service manages are recovered (issue 15, point 7): a pending
student or a staff account gets the same start as anyone (tests/recovery/
test_uniform_start.py) and nothing sent, and cannot reach the choice to unlock or set a
password by any way in: not by the step's URL, not by posting to it, not even with a code
that matched the flow's record."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from flask import Flask
from keycloak import KeycloakAdmin

from provider.guards import verification
from provider.services import Services
from tests.support import recovery_accounts as accounts
from tests.support.inbox import Inbox
from tests.support.recovery import recovery_engine
from tests.support.recovery_accounts import Typed
from tests.support.recovery_http import RecoveryBrowser

LATER_STEPS = ("choose", "new-password", "finished")


@pytest.fixture(params=["pending", "staff"])
def outside(
    request: pytest.FixtureRequest,
    app: Flask,
    inbox: Inbox,
    services: Services,
    admin: KeycloakAdmin,
) -> Iterator[Typed]:
    if request.param == "pending":  # midway through activation: its contacts verified
        yield accounts.pending(app, inbox, services)
        return
    account = accounts.staff(admin)
    yield account
    admin.delete_user(account.keycloak_id)


@pytest.mark.parametrize("channel", ["email", "phone"])
def test_an_account_outside_recovery_never_reaches_the_choice(
    app: Flask, inbox: Inbox, services: Services, live_url: str, outside: Typed, channel: str
) -> None:
    browser = RecoveryBrowser(live_url)
    started = browser.start(outside.user_id, channel)
    assert (started.status, started.location) == (302, "/recover/code")
    assert browser.follow(started).status == 200

    for step in LATER_STEPS:
        assert browser.get(step).location == "/recover/code"
        posted = browser.post(step, {"choice": "unlock", "password": "x", "confirm": "x"})
        assert (posted.status, posted.location) == (302, "/recover/code")

    # A code that matches the flow's record, as if one had been sent to it or guessed.
    engine = recovery_engine(app)
    state = engine.load_or_start(browser.flow_id)
    assert state.data is not None and state.data.keycloak_id is None
    code, _ = verification.issue_hashed(
        services.sessions,
        services.hasher,
        flow_key=engine.key(state),
        student=outside.user_id,
        channel=channel,
        contact=state.data.contact,
        now=datetime.now(UTC),
        caps=verification.SendCaps(student=()),
    )
    answer = browser.code(code.code)
    assert answer.status == 400
    assert engine.load_or_start(browser.flow_id).step == "code"
    assert browser.get("choose").location == "/recover/code"

    accounts.deliveries_settled()
    assert accounts.messages_to(inbox, outside) == 0
    assert ("recovery.code_proven", {}) not in accounts.audit_of(services, outside.user_id)
