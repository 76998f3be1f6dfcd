"""The service's own Keycloak client can do what the service needs, and nothing more.

Every call here uses the service account's token (client credentials of
`umpass-activation`), straight over HTTP, so the checks see exactly what Keycloak allows.
"""

from __future__ import annotations

import pytest
import requests
from keycloak import KeycloakAdmin

from provider.config import Settings
from provider.keycloak import KeycloakGateway


@pytest.fixture(scope="module")
def service_session(settings: Settings) -> requests.Session:
    kc = settings.keycloak
    token = requests.post(
        f"{kc.url}/realms/{kc.realm}/protocol/openid-connect/token",
        data={
            "grant_type": "client_credentials",
            "client_id": kc.client_id,
            "client_secret": kc.client_secret,
        },
        timeout=30,
    )
    token.raise_for_status()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
    return session


@pytest.fixture(scope="module")
def api(settings: Settings) -> str:
    return f"{settings.keycloak.url}/admin/realms/{settings.keycloak.realm}"


def test_service_account_holds_exactly_the_needed_roles(admin: KeycloakAdmin) -> None:
    clients = {c["clientId"]: c for c in admin.get_clients()}
    rm = clients["realm-management"]["id"]
    account = admin.get_client_service_account_user(clients["umpass-activation"]["id"])
    held = {r["name"] for r in admin.get_client_roles_of_user(account["id"], rm)}
    assert held == {"view-users", "manage-users", "view-realm"}
    # Effective roles, composites and groups included: nothing beyond those three.
    effective = {r["name"] for r in admin.get_composite_client_roles_of_user(account["id"], rm)}
    assert effective == {"view-users", "manage-users", "view-realm", "query-users", "query-groups"}
    assert admin.get_user_groups(account["id"]) == []


def test_service_can_do_its_job(
    service_session: requests.Session, api: str, pending_user: str, gateway: KeycloakGateway
) -> None:
    assert service_session.get(f"{api}/users/{pending_user}", timeout=30).status_code == 200
    assert (
        service_session.get(
            f"{api}/users", params={"q": "activation_state:pending"}, timeout=30
        ).status_code
        == 200
    )
    realm = service_session.get(api, timeout=30)
    assert realm.status_code == 200
    assert "length(12)" in realm.json()["passwordPolicy"]
    reset = service_session.put(
        f"{api}/users/{pending_user}/reset-password",
        json={"type": "password", "value": "plenty long passphrase 42", "temporary": False},
        timeout=30,
    )
    assert reset.status_code == 204
    lock = f"{api}/attack-detection/brute-force/users/{pending_user}"
    assert service_session.get(lock, timeout=30).status_code == 200
    assert service_session.delete(lock, timeout=30).status_code == 204


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "", {"registrationAllowed": True}),
        ("PUT", "", {"passwordPolicy": "length(1)"}),
        ("POST", "/clients", {"clientId": "sneaky"}),
        ("GET", "/clients", None),
        ("PUT", "/users/profile", {"attributes": []}),
        ("POST", "/roles", {"name": "sneaky"}),
        ("POST", "/identity-provider/instances", {"alias": "x", "providerId": "oidc"}),
        ("POST", "/partialImport", {"ifResourceExists": "SKIP", "users": []}),
    ],
)
def test_service_is_refused_what_it_must_not_do(
    service_session: requests.Session, api: str, method: str, path: str, body: dict | None
) -> None:
    response = service_session.request(method, f"{api}{path}", json=body, timeout=30)
    assert response.status_code == 403, response.text


def test_service_cannot_grant_itself_more_roles(
    service_session: requests.Session, api: str, admin: KeycloakAdmin
) -> None:
    clients = {c["clientId"]: c for c in admin.get_clients()}
    rm = clients["realm-management"]["id"]
    account = admin.get_client_service_account_user(clients["umpass-activation"]["id"])
    realm_admin = admin.get_client_role(rm, "realm-admin")
    response = service_session.post(
        f"{api}/users/{account['id']}/role-mappings/clients/{rm}", json=[realm_admin], timeout=30
    )
    assert response.status_code == 403
    held = {r["name"] for r in admin.get_client_roles_of_user(account["id"], rm)}
    assert "realm-admin" not in held


def test_service_cannot_touch_the_master_realm(
    service_session: requests.Session, settings: Settings
) -> None:
    response = service_session.get(f"{settings.keycloak.url}/admin/realms/master/users", timeout=30)
    assert response.status_code in (401, 403)
