"""Step 5, done, on a flow put at it (the account activated by the password step's own write):
the end page, and nothing a browser sends there changes anything."""

from __future__ import annotations

import pytest
from keycloak import KeycloakAdmin

from provider.config import Settings
from provider.keycloak import STATE_ACTIVE
from provider.oidc import handoff
from provider.services import Services
from tests.integration.test_oidc_provider import answered_at
from tests.support.broker import broker_request, pkce
from tests.support.flow_at import FlowAt, StepClient
from tests.support.flow_client import StudentDetails


@pytest.fixture
def at_done(flow_at: FlowAt, student: StudentDetails) -> StepClient:
    return flow_at("done", student)


def test_the_page_says_the_account_is_active_and_where_to_sign_in(
    at_done: StepClient, services: Services, student: StudentDetails
) -> None:
    page = at_done.page("done")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "Step 5 of 5" in body
    assert "Your account is active" in body
    # The user ID to sign in with, shown (the flow's own, as identify normalised it).
    assert f'Your user ID is<br><strong class="user-id" id="user-id">{student.user_id}<' in body
    assert f'href="{services.settings.after_activation_url}"' in body
    assert "<form" not in body.split("<main", 1)[-1]  # nothing left to submit


def test_a_post_to_the_end_page_changes_nothing(
    at_done: StepClient, student: StudentDetails, services: Services
) -> None:
    before = at_done.flow().version
    response = at_done.submit("done", {"anything": "x"})
    assert response.status_code == 200
    assert "Your account is active" in response.get_data(as_text=True)
    assert (at_done.flow().step, at_done.flow().version) == ("done", before)


def test_the_password_step_submitted_again_lands_here_and_sets_nothing(
    at_done: StepClient, student: StudentDetails, services: Services, admin: KeycloakAdmin
) -> None:
    user = services.keycloak.find_user(student.user_id)
    assert user is not None and user.activation_state == STATE_ACTIVE
    credentials = admin.get_credentials(user.id)
    before = at_done.flow().version
    response = at_done.set_password("another quiet harbour 2031")  # not the one it has
    assert response.status_code == 302 and response.location.endswith("/activate/done")
    assert admin.get_credentials(user.id) == credentials  # the same password, untouched
    assert (at_done.flow().step, at_done.flow().version) == ("done", before)


def test_a_sign_in_is_answered_only_for_an_account_this_flow_activated(
    at_done: StepClient, services: Services, settings: Settings
) -> None:
    """The one place an identity is asserted needs this flow's own activation as well as
    the end page: a flow at "done" without it (written by anything else) asserts nothing,
    and keeps the waiting request."""
    state = at_done.flow()
    assert state.data is not None and state.data.activated  # the password step's write
    request = broker_request(settings, pkce()[1])
    state.data.caller, state.data.activated = dict(request), False
    at_done.engine.save(state)
    page = at_done.page("done")
    assert page.status_code == 200 and 'http-equiv="refresh"' not in page.get_data(as_text=True)
    assert at_done.data.caller == request
    state = at_done.flow()
    assert state.data is not None
    state.data.activated = True
    at_done.engine.save(state)
    location = answered_at(at_done.page("done"), wait=handoff.SHOW_USER_ID_SECONDS)
    assert location.startswith(settings.oidc.broker_redirect_uri) and "code=" in location
    assert at_done.data.caller is None  # answered once
