"""The realm's browser flow and first-broker-login flow, as applied from keycloak_config/.

Pending accounts go to activation and never see a password form, even when the
identity provider is disabled; a hand edit of a flow is drift that the next apply
repairs by building a fresh copy and swapping it in.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import parse_qs, urlparse

import pytest
from keycloak import KeycloakAdmin

from keycloak_config import flow_merge
from keycloak_config.apply import apply_realm
from keycloak_config.flows import FlowBuilder
from provider.config import Settings
from provider.keycloak import ACCEPTED_POLICIES
from provider.services import Services
from tests.conftest import KeycloakUnderTest, RealmUnderTest
from tests.support.keycloak_login import LoginResult, sign_in
from tests.support.policies import accepted_now
from tests.support.realm_changes import RealmChanges
from tests.support.students import enrol_student

PASSWORD = "meadow quartz lantern 2032"
IDP = "umpass-activation"


def _sign_in(server: KeycloakUnderTest, realm: RealmUnderTest, username: str) -> LoginResult:
    return sign_in(server.url, realm.name, username, PASSWORD)


def _bound_browser_flow(admin: KeycloakAdmin, realm: RealmUnderTest) -> str:
    return admin.get_realm(realm.name)["browserFlow"]


def test_flows_and_identity_provider_are_applied(
    realm: RealmUnderTest, admin: KeycloakAdmin, settings: Settings
) -> None:
    assert any(line.startswith("add flow umpass browser") for line in realm.first_apply)
    assert f"add identity provider {IDP} — the activation service" in realm.first_apply
    assert _bound_browser_flow(admin, realm).startswith("umpass browser ")
    idp = admin.get_idp(IDP)
    assert idp["hideOnLogin"] is True and idp["trustEmail"] is False
    assert idp["firstBrokerLoginFlowAlias"].startswith("umpass first broker login ")
    assert idp["postBrokerLoginFlowAlias"].startswith("umpass after activation ")
    config = idp["config"]
    assert config["syncMode"] == "IMPORT"
    assert config["pkceEnabled"] == "true" and config["validateSignature"] == "true"
    assert config["issuer"] == settings.base_url + "/oidc"
    builder = FlowBuilder(admin, realm.name)
    first_broker = builder.tree(idp["firstBrokerLoginFlowAlias"])
    assert [n.get("authenticator", n.get("flow")) for n in first_broker] == [
        "idp-detect-existing-broker-user",
        "idp-auto-link",
        "only active accounts",
        "only right after activation",
    ]
    assert [n["requirement"] for n in first_broker] == [
        "REQUIRED",
        "REQUIRED",
        "CONDITIONAL",
        "CONDITIONAL",
    ]
    # Linking spends the handoff ticket the activation opened.
    mappers = admin.connection.raw_get(
        f"admin/realms/{realm.name}/identity-provider/instances/{IDP}/mappers"
    ).json()
    assert [(m["identityProviderMapper"], m["config"]) for m in mappers] == [
        (
            "hardcoded-attribute-idp-mapper",
            {"syncMode": "FORCE", "attribute": "umpass_broker_ticket", "attribute.value": "spent"},
        )
    ]


def test_the_typed_user_id_is_passed_on_where_keycloak_has_the_step(
    realm: RealmUnderTest, admin: KeycloakAdmin
) -> None:
    """This Keycloak carries keycloak_addon/'s JAR: the pending branch sets login_hint
    from the identified account before the redirector, and the plan said so."""
    offered = admin.connection.raw_get(
        f"admin/realms/{realm.name}/authentication/authenticator-providers"
    ).json()
    assert flow_merge.LOGIN_HINT_STEP in {p["id"] for p in offered}
    line = next(x for x in realm.first_apply if x.startswith("add flow umpass browser"))
    assert f"with {flow_merge.LOGIN_HINT_STEP}: the user ID typed at sign-in goes on" in line
    tree = FlowBuilder(admin, realm.name).tree(_bound_browser_flow(admin, realm))
    forms = tree[0]["executions"][-1]["executions"]
    pending = next(n for n in forms if n.get("flow") == "pending: to activation")
    assert [
        (n.get("authenticator") or n["flow"], n["requirement"]) for n in pending["executions"]
    ] == [
        ("conditional-user-attribute", "REQUIRED"),
        (flow_merge.LOGIN_HINT_STEP, "REQUIRED"),
        ("pending: to activation or refused", "REQUIRED"),
    ]
    redirect_or_deny = pending["executions"][2]["executions"]
    assert [(n.get("authenticator") or n["flow"], n["requirement"]) for n in redirect_or_deny] == [
        ("identity-provider-redirector", "ALTERNATIVE"),
        ("pending: activation unavailable", "ALTERNATIVE"),
    ]
    # Applied as planned: nothing to do, no drift.
    assert apply_realm(realm.options, dry_run=True).writes() == []


def test_without_the_step_the_plan_says_the_user_id_stays_behind(
    realm: RealmUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Keycloak without the JAR (here: the extension looking for a step this one does
    not offer): the browser flow is planned without the step, and the plan says in one
    line what that means and how to add it."""
    monkeypatch.setattr(flow_merge, "LOGIN_HINT_STEP", "umpass-not-deployed")
    plan = apply_realm(realm.options, dry_run=True)
    lines = plan.lines()
    assert lines[0].startswith("change flow umpass browser — built from 'browser', keeping")
    assert "umpass-not-deployed" not in lines[0]
    assert all("umpass browser" in line for line in lines), lines  # nothing else changes
    (note,) = plan.notes
    assert "not carried over to activation" in note and "scripts/keycloak addon" in note
    assert f"\nNote: {note}" in plan.render("Plan")


def test_pending_student_is_sent_to_activation_with_a_full_request(
    keycloak_server: KeycloakUnderTest, realm: RealmUnderTest, services: Services
) -> None:
    who = enrol_student(services, "p")
    result = _sign_in(keycloak_server, realm, who.user_id)
    assert not result.ok and 'name="password"' not in result.page
    # Keycloak's broker login, which goes on to the service's authorize endpoint.
    assert f"/broker/{IDP}/login" in result.location


def test_active_student_gets_the_password_form(
    keycloak_server: KeycloakUnderTest, realm: RealmUnderTest, services: Services
) -> None:
    who = enrol_student(services, "p")
    user = services.keycloak.find_user(who.user_id)
    assert user is not None
    services.keycloak.activate(
        user.id, PASSWORD, attributes={ACCEPTED_POLICIES: accepted_now(services)}
    )
    assert _sign_in(keycloak_server, realm, who.user_id).ok


def test_broker_sends_what_the_provider_requires(
    keycloak_server: KeycloakUnderTest, realm: RealmUnderTest, services: Services
) -> None:
    who = enrol_student(services, "p")
    result = _sign_in(keycloak_server, realm, who.user_id)
    assert result.session is not None
    hop = result.session.get(result.location, allow_redirects=False, timeout=30)
    target = urlparse(hop.headers["Location"])
    assert target.path == "/oidc/authorize"
    query = {k: v[0] for k, v in parse_qs(target.query).items()}
    assert query["client_id"] == services.settings.oidc.broker_client_id
    assert query["redirect_uri"] == services.settings.oidc.broker_redirect_uri
    assert query["response_type"] == "code" and "openid" in query["scope"].split()
    assert query["state"] and query["nonce"]
    assert query["code_challenge_method"] == "S256" and query["code_challenge"]


@pytest.fixture
def idp_disabled(admin: KeycloakAdmin) -> Iterator[None]:
    rep = admin.get_idp(IDP)
    admin.connection.raw_put(
        f"admin/realms/{admin.connection.realm_name}/identity-provider/instances/{IDP}",
        data=json.dumps({**rep, "enabled": False}),
    )
    try:
        yield
    finally:
        admin.connection.raw_put(
            f"admin/realms/{admin.connection.realm_name}/identity-provider/instances/{IDP}",
            data=json.dumps({**rep, "enabled": True}),
        )


def test_disabled_identity_provider_never_lets_a_pending_account_through(
    keycloak_server: KeycloakUnderTest,
    realm: RealmUnderTest,
    services: Services,
    idp_disabled: None,
) -> None:
    who = enrol_student(services, "p")
    user = services.keycloak.find_user(who.user_id)
    assert user is not None
    # Even with a password set behind the service's back, a pending account cannot
    # sign in: the password form is only behind "not pending".
    services.keycloak.set_password(user.id, PASSWORD)
    result = _sign_in(keycloak_server, realm, who.user_id)
    assert not result.ok
    assert 'name="password"' not in result.page
    assert "Your account is not active yet" in result.page


def test_hand_edited_flow_is_drift_and_is_replaced_whole(
    realm: RealmUnderTest, admin: KeycloakAdmin, realm_changes: RealmChanges
) -> None:
    before = _bound_browser_flow(admin, realm)
    flat = admin.get_authentication_flow_executions(before)
    password_form = next(e for e in flat if e.get("providerId") == "auth-password-form")

    def put_back() -> None:  # unless the apply below already replaced the flow
        if any(f["alias"] == before for f in admin.get_authentication_flows()):
            admin.update_authentication_flow_executions(password_form, flow_alias=before)

    realm_changes.on_undo(put_back)
    admin.update_authentication_flow_executions(
        {**password_form, "requirement": "DISABLED"}, flow_alias=before
    )
    planned = apply_realm(realm.options, dry_run=True).lines()
    assert any(line.startswith("change flow umpass browser") for line in planned), planned
    changes = apply_realm(realm.options).lines()
    after = _bound_browser_flow(admin, realm)
    assert after != before
    assert f"remove flow {before} — superseded" in changes
    assert apply_realm(realm.options).writes() == []
    aliases = {f["alias"] for f in admin.get_authentication_flows()}
    assert before not in aliases and after in aliases


def test_password_grant_refuses_a_pending_account(
    keycloak_server: KeycloakUnderTest, realm: RealmUnderTest, services: Services
) -> None:
    """admin-cli allows password grants in every realm; the realm's direct-grant flow
    refuses pending accounts even with a password set behind the service's back."""
    import requests

    who = enrol_student(services, "d")
    user = services.keycloak.find_user(who.user_id)
    assert user is not None
    services.keycloak.set_password(user.id, PASSWORD)
    token_url = f"{keycloak_server.url}/realms/{realm.name}/protocol/openid-connect/token"
    grant = {"grant_type": "password", "client_id": "admin-cli", "username": who.user_id}
    refused = requests.post(token_url, data={**grant, "password": PASSWORD}, timeout=30)
    assert refused.status_code in (400, 401) and "access_token" not in refused.text
    services.keycloak.activate(
        user.id, PASSWORD, attributes={ACCEPTED_POLICIES: accepted_now(services)}
    )
    allowed = requests.post(token_url, data={**grant, "password": PASSWORD}, timeout=30)
    assert allowed.status_code == 200 and "access_token" in allowed.json()
