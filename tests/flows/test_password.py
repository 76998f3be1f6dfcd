"""Step 4, password, on a flow put at it: the service's rules, then Keycloak's, then the one
write that makes the account active."""

from __future__ import annotations

import pytest
from keycloak import KeycloakAdmin

from provider.keycloak import ACCEPTED_POLICIES, STATE_ACTIVE, STATE_PENDING
from provider.services import Services
from provider.storage.models import ActivationCode
from tests.support.flow_at import FlowAt, StepClient
from tests.support.flow_client import StudentDetails
from tests.support.realm_changes import RealmChanges

PASSWORD = "orbit lantern velvet 1987"


@pytest.fixture
def at_password(flow_at: FlowAt, student: StudentDetails) -> StepClient:
    return flow_at("password", student)


def _kc_user(services: Services, user_id: str):
    user = services.keycloak.find_user(user_id)
    assert user is not None
    return user


def _nothing_written(flow: StepClient, services: Services, student: StudentDetails) -> None:
    """A refused password leaves the flow at the step, unclaimed, and the account pending
    with no password and its code free."""
    state = flow.flow()
    assert state.step == "password" and state.data is not None and state.data.claim is None
    user = _kc_user(services, student.user_id)
    assert user.activation_state == STATE_PENDING
    with services.reads() as db:
        code = db.get(ActivationCode, state.data.code_id)
        assert code is not None and code.used_at is None and code.claimed_by is None


def test_the_page_shows_the_rules_before_typing(at_password: StepClient) -> None:
    page = at_password.page("password")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "Step 4 of 5" in body
    assert "Use at least 12 characters" in body  # the realm's policy, read live
    assert "Do not use your user ID, email address, date of birth, or activation code." in body
    assert body.count('autocomplete="new-password"') == 2
    assert 'name="password"' in body and 'name="confirm"' in body


def test_a_good_password_activates_the_account_and_the_flow_forgets(
    at_password: StepClient, student: StudentDetails, services: Services, admin: KeycloakAdmin
) -> None:
    accepted = at_password.data.accepted_policies
    assert accepted
    response = at_password.set_password(PASSWORD)
    assert response.status_code == 302 and response.location.endswith("/activate/done")
    state = at_password.flow()
    assert state.step == "done"
    data = state.data
    assert data is not None
    # Only what the end page and a waiting sign-in need is kept.
    assert (data.claim, data.hints, data.on_record, data.pending) == (None, [], {}, None)
    user = _kc_user(services, student.user_id)
    assert user.activation_state == STATE_ACTIVE and user.attribute("activated_at")
    assert user.attributes[ACCEPTED_POLICIES] == accepted
    assert [c["type"] for c in admin.get_credentials(user.id)] == ["password"]
    with services.reads() as db:
        code = db.get(ActivationCode, data.code_id)
        assert code is not None and code.used_at is not None


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short pass", "Your password is too short: use at least 12 characters."),
        ("passwordpassword", "Choose a harder password:"),
        ("{user_id} is my password", "Your password cannot contain your user ID."),
        ("born 28/02/2006 in macau", "Your password cannot contain your date of birth."),
        ("{code}", "Your password cannot be your activation code."),
    ],
)
def test_weak_passwords_are_refused_with_a_reason(
    at_password: StepClient,
    student: StudentDetails,
    services: Services,
    password: str,
    reason: str,
) -> None:
    typed = password.format(user_id=student.user_id, code=student.code)
    response = at_password.set_password(typed)
    assert response.status_code == 400
    assert reason in response.get_data(as_text=True)
    assert _kc_user(services, student.user_id).activation_state == STATE_PENDING
    _nothing_written(at_password, services, student)


def test_keycloak_refusal_is_shown_as_a_sentence(
    at_password: StepClient,
    student: StudentDetails,
    services: Services,
    admin: KeycloakAdmin,
    realm_changes: RealmChanges,
) -> None:
    policy = admin.get_realm(services.settings.keycloak.realm)["passwordPolicy"]
    # A rule only Keycloak knows: the service's own checks pass, Keycloak refuses.
    with realm_changes.realm_settings({"passwordPolicy": f"{policy} and specialChars(5)"}):
        response = at_password.set_password(PASSWORD)
    assert response.status_code == 400
    assert "Your password needs more symbols." in response.get_data(as_text=True)
    user = _kc_user(services, student.user_id)
    assert user.activation_state == STATE_PENDING
    assert admin.get_credentials(user.id) == []
    _nothing_written(at_password, services, student)
    # The student simply tries again once the rule is gone.
    assert at_password.set_password(PASSWORD).location.endswith("/activate/done")


def test_mismatched_confirmation(
    at_password: StepClient, student: StudentDetails, services: Services
) -> None:
    response = at_password.set_password(PASSWORD, confirm=PASSWORD + "!")
    assert response.status_code == 400
    assert "The two passwords are not the same" in response.get_data(as_text=True)
    _nothing_written(at_password, services, student)


def test_strength_endpoint_judges_like_the_submit(at_password: StepClient) -> None:
    early = at_password.client.post("/activate/password/strength", data={"password": "x"})
    assert early.status_code == 400  # no CSRF token: refused before anything else
    token = at_password.token
    weak = at_password.client.post(
        "/activate/password/strength", data={"csrf_token": token, "password": "passwordpassword"}
    )
    assert weak.status_code == 200
    assert weak.json["score"] < 3
    assert weak.json["reason"].startswith("Choose a harder password:")
    strong = at_password.client.post(
        "/activate/password/strength", data={"csrf_token": token, "password": PASSWORD}
    )
    assert strong.json == {"score": 4, "reason": None}
