"""Point 2 of issue 19: every client's tokens say whether the account is active.

The `umpass` client scope (keycloak_config/client-scopes.json) is a realm default scope and
a default scope of every OpenID Connect client; `umpass-saml` the same for SAML clients.
"""

from __future__ import annotations

from keycloak import KeycloakAdmin

from keycloak_config.apply import apply_realm
from keycloak_config.claim_scopes import gets_tokens
from provider.services import Services
from tests.conftest import KeycloakUnderTest, RealmUnderTest
from tests.support.grants import (
    active_student,
    add_client,
    claims,
    password_grant,
    userinfo,
)
from tests.support.realm_changes import RealmChanges

SCOPES = {"openid-connect": "umpass", "saml": "umpass-saml"}


def _scope(admin: KeycloakAdmin, realm: RealmUnderTest, name: str) -> dict:
    scopes = admin.connection.raw_get(f"admin/realms/{realm.name}/client-scopes").json()
    return next(s for s in scopes if s["name"] == name)


def test_every_client_and_every_later_client_gets_the_scope(
    realm: RealmUnderTest, admin: KeycloakAdmin
) -> None:
    assert "add client scope umpass as a realm default scope — every client made later gets it" in (
        realm.first_apply
    )
    defaults = admin.connection.raw_get(
        f"admin/realms/{realm.name}/default-default-client-scopes"
    ).json()
    assert set(SCOPES.values()) <= {s["name"] for s in defaults}
    clients = admin.get_clients()
    for protocol, scope in SCOPES.items():
        for client in clients:
            if gets_tokens(client, protocol):
                assert scope in client["defaultClientScopes"], client["clientId"]
    assert sum(gets_tokens(c, "openid-connect") for c in clients) >= 8  # Keycloak's and ours
    mappers = {m["name"]: m["config"] for m in _scope(admin, realm, "umpass")["protocolMappers"]}
    for claim in ("activation_state", "activated_at"):
        assert mappers[claim]["id.token.claim"] == "true"
        assert mappers[claim]["userinfo.token.claim"] == "true"
    saml = {m["name"] for m in _scope(admin, realm, "umpass-saml")["protocolMappers"]}
    assert saml == {"activation_state", "activated_at"}


def test_a_client_the_realm_had_before_puts_the_state_in_its_id_token(
    keycloak_server: KeycloakUnderTest, realm: RealmUnderTest, services: Services
) -> None:
    """admin-cli is Keycloak's own, older than the extension: it has no mapper of its own.
    (Its access tokens are lightweight, which userinfo does not take: the next test.)"""
    student = active_student(services)
    answer = password_grant(keycloak_server.url, realm.name, "admin-cli", student.username)
    assert answer.status_code == 200, answer.text
    tokens = answer.json()
    id_token = claims(tokens["id_token"])
    assert id_token["activation_state"] == "active"
    assert id_token["activated_at"].endswith("Z")


def test_a_client_made_after_apply_puts_the_state_in_id_token_and_userinfo(
    keycloak_server: KeycloakUnderTest,
    realm: RealmUnderTest,
    services: Services,
    realm_changes: RealmChanges,
) -> None:
    client = add_client(realm_changes, directAccessGrantsEnabled=True)
    student = active_student(services)
    answer = password_grant(keycloak_server.url, realm.name, client["clientId"], student.username)
    assert answer.status_code == 200, answer.text
    tokens = answer.json()
    id_token = claims(tokens["id_token"])
    assert id_token["activation_state"] == "active"
    info = userinfo(keycloak_server.url, realm.name, tokens["access_token"])
    assert info.status_code == 200, info.text
    assert info.json()["activation_state"] == "active"
    assert info.json()["activated_at"] == id_token["activated_at"]
    # Nothing for apply to do about a client that has the scope already.
    assert apply_realm(realm.options, dry_run=True).writes() == []


def test_a_client_without_the_scope_is_drift_that_apply_repairs(
    realm: RealmUnderTest, admin: KeycloakAdmin, realm_changes: RealmChanges
) -> None:
    client = add_client(realm_changes)
    scope = _scope(admin, realm, "umpass")
    path = f"admin/realms/{realm.name}/clients/{client['id']}/default-client-scopes/{scope['id']}"
    assert admin.connection.raw_delete(path).status_code == 204
    drift = apply_realm(realm.options, dry_run=True).lines()
    assert drift == [
        f"add client scope umpass as a default scope of {client['clientId']} — its tokens "
        "say whether the account is active"
    ]
    assert apply_realm(realm.options).lines() == drift
    assert apply_realm(realm.options, dry_run=True).writes() == []
