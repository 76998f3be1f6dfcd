"""The service's own Keycloak client can do what the service needs, and nothing more.

Every call here uses the service account's token (client credentials of
`umpass-activation`), straight over HTTP, so the checks see exactly what Keycloak allows.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest
import requests
from keycloak import KeycloakAdmin

from keycloak_config.apply import ApplyError, apply_realm
from provider.config import Settings
from provider.keycloak import STUDENTS_GROUP, KeycloakGateway
from tests.conftest import RealmUnderTest
from tests.support.realm_changes import RealmChanges


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


def test_service_account_holds_no_realm_wide_user_role(admin: KeycloakAdmin) -> None:
    clients = {c["clientId"]: c for c in admin.get_clients()}
    rm = clients["realm-management"]["id"]
    account = admin.get_client_service_account_user(clients["umpass-activation"]["id"])
    held = {r["name"] for r in admin.get_client_roles_of_user(account["id"], rm)}
    assert held == {"query-users", "view-realm"}
    # Effective roles, composites and groups included: view-users or manage-users anywhere
    # would switch the fine-grained evaluation off and reach every account.
    effective = {r["name"] for r in admin.get_composite_client_roles_of_user(account["id"], rm)}
    assert effective == {"query-users", "view-realm"}
    assert admin.get_user_groups(account["id"]) == []
    assert admin.get_realm(admin.get_current_realm())["adminPermissionsEnabled"] is True


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
    held = _grant_itself(service_session, api, admin, "umpass-activation", "realm-admin")
    assert "realm-admin" not in held


def _grant_itself(
    session: requests.Session, api: str, admin: KeycloakAdmin, client_id: str, role: str
) -> set[str]:
    """The client's service account asks for a realm-management role for itself: refused
    (403); the realm-management roles it holds afterwards."""
    clients = {c["clientId"]: c for c in admin.get_clients()}
    rm = clients["realm-management"]["id"]
    account = admin.get_client_service_account_user(clients[client_id]["id"])
    wanted = admin.get_client_role(rm, role)
    response = session.post(
        f"{api}/users/{account['id']}/role-mappings/clients/{rm}", json=[wanted], timeout=30
    )
    assert response.status_code == 403
    return {r["name"] for r in admin.get_client_roles_of_user(account["id"], rm)}


def test_service_cannot_touch_the_master_realm(
    service_session: requests.Session, settings: Settings
) -> None:
    response = service_session.get(f"{settings.keycloak.url}/admin/realms/master/users", timeout=30)
    assert response.status_code in (401, 403)


# -- students only (fine-grained admin permissions v2) -------------------------------------


@pytest.fixture(scope="module")
def staff_account(admin: KeycloakAdmin) -> Iterator[str]:
    """A staff account with a password and the help-desk's admin role: outside the group."""
    name = f"staff{secrets.token_hex(3)}"
    user_id = admin.create_user(
        {
            "username": name,
            "enabled": True,
            "email": f"{name}@staff.example.edu",
            "firstName": "Staff",
            "lastName": "Member",
            "credentials": [{"type": "password", "value": STAFF_PASSWORD, "temporary": False}],
        }
    )
    yield user_id
    admin.delete_user(user_id)


STAFF_PASSWORD = "staff own passphrase 9"


def test_service_cannot_find_read_or_change_a_staff_account(
    service_session: requests.Session,
    api: str,
    admin: KeycloakAdmin,
    staff_account: str,
    settings: Settings,
) -> None:
    name = admin.get_user(staff_account)["username"]
    found = service_session.get(
        f"{api}/users", params={"username": name, "exact": "true"}, timeout=30
    )
    assert found.status_code == 200
    assert found.json() == []  # a search sees students only
    refused = [
        ("GET", f"/users/{staff_account}", None),
        ("PUT", f"/users/{staff_account}", {"firstName": "Mallory", "email": "m@evil.example"}),
        (
            "PUT",
            f"/users/{staff_account}/reset-password",
            {"type": "password", "value": "taken over passphrase 1", "temporary": False},
        ),
        ("GET", f"/users/{staff_account}/credentials", None),
        ("GET", f"/attack-detection/brute-force/users/{staff_account}", None),
        ("POST", f"/users/{staff_account}/logout", None),
        ("DELETE", f"/users/{staff_account}", None),
    ]
    for method, path, body in refused:
        response = service_session.request(method, f"{api}{path}", json=body, timeout=30)
        assert response.status_code == 403, (method, path, response.status_code)
    staff = admin.get_user(staff_account)
    assert (staff["firstName"], staff["email"]) == ("Staff", f"{name}@staff.example.edu")
    assert password_grant_works(settings, name, STAFF_PASSWORD)


def test_service_cannot_pull_an_account_into_the_students_group(
    service_session: requests.Session, api: str, admin: KeycloakAdmin, staff_account: str
) -> None:
    group = admin.get_group_by_path(f"/{STUDENTS_GROUP}")
    service_id = service_account_id(admin)
    for user_id in (staff_account, service_id):
        response = service_session.put(f"{api}/users/{user_id}/groups/{group['id']}", timeout=30)
        assert response.status_code == 403
        assert admin.get_user_groups(user_id) == []


def test_service_cannot_grant_a_realm_role_to_anyone(
    service_session: requests.Session,
    api: str,
    admin: KeycloakAdmin,
    staff_account: str,
    pending_user: str,
) -> None:
    role = admin.get_realm_role("activation-admin")
    for user_id in (service_account_id(admin), staff_account, pending_user):
        response = service_session.post(
            f"{api}/users/{user_id}/role-mappings/realm", json=[role], timeout=30
        )
        assert response.status_code == 403, user_id
        held = {r["name"] for r in admin.get_realm_roles_of_user(user_id)}
        assert "activation-admin" not in held


def test_service_creates_students_only_inside_the_group(
    service_session: requests.Session, api: str, admin: KeycloakAdmin
) -> None:
    outside = service_session.post(
        f"{api}/users", json={"username": f"x{secrets.token_hex(3)}", "enabled": True}, timeout=30
    )
    assert outside.status_code == 403
    name = f"s{secrets.token_hex(3)}"
    inside = service_session.post(
        f"{api}/users",
        json={"username": name, "enabled": True, "groups": [f"/{STUDENTS_GROUP}"]},
        timeout=30,
    )
    assert inside.status_code == 201
    user_id = inside.headers["Location"].rsplit("/", 1)[1]
    assert [g["name"] for g in admin.get_user_groups(user_id)] == [STUDENTS_GROUP]
    admin.delete_user(user_id)


def service_account_id(admin: KeycloakAdmin) -> str:
    clients = {c["clientId"]: c for c in admin.get_clients()}
    return admin.get_client_service_account_user(clients["umpass-activation"]["id"])["id"]


def password_grant_works(settings: Settings, username: str, password: str) -> bool:
    """The staff password still works (the realm's direct grant through admin-cli)."""
    kc = settings.keycloak
    response = requests.post(
        f"{kc.url}/realms/{kc.realm}/protocol/openid-connect/token",
        data={
            "grant_type": "password",
            "client_id": "admin-cli",
            "username": username,
            "password": password,
        },
        timeout=30,
    )
    return response.status_code == 200


def test_apply_never_pulls_an_account_back_into_the_group(
    service_session: requests.Session, api: str, admin: KeycloakAdmin, realm: RealmUnderTest
) -> None:
    """A student who became staff keeps `activation_state`; once an admin has taken them out
    of the group, a later apply (every upgrade runs one) leaves them out of the service's
    reach."""
    group = admin.get_group_by_path(f"/{STUDENTS_GROUP}")
    user_id = admin.create_user(
        {
            "username": f"ta{secrets.token_hex(3)}",
            "enabled": True,
            "attributes": {"activation_state": ["active"]},
            "groups": [f"/{STUDENTS_GROUP}"],
        }
    )
    try:
        admin.group_user_remove(user_id, group["id"])
        assert apply_realm(realm.options).writes() == []
        assert admin.get_user_groups(user_id) == []
        assert service_session.get(f"{api}/users/{user_id}", timeout=30).status_code == 403
    finally:
        admin.delete_user(user_id)


def test_apply_refuses_a_user_role_the_service_account_inherits(
    admin: KeycloakAdmin, realm: RealmUnderTest, realm_changes: RealmChanges
) -> None:
    """view-users in the realm's default roles reaches the service account too, and switches
    the fine-grained evaluation off for it: apply says so instead of reporting success."""
    clients = {c["clientId"]: c for c in admin.get_clients()}
    rm = clients["realm-management"]["id"]
    view_users = admin.get_client_role(rm, "view-users")
    default = f"default-roles-{realm.name}"
    path = f"admin/realms/{realm.name}/roles/{default}/composites"
    take_back = realm_changes.on_undo(
        lambda: admin.connection.raw_delete(path, data=json.dumps([view_users])).raise_for_status()
    )
    admin.connection.raw_post(path, data=json.dumps([view_users])).raise_for_status()
    for dry_run in (True, False):
        with pytest.raises(ApplyError, match="view-users"):
            apply_realm(realm.options, dry_run=dry_run)
    take_back()
    assert apply_realm(realm.options).writes() == []


# -- the realm-health check's read-only account (umpass-realm-monitor) ---------------------

MONITOR_ROLES = {"view-realm", "view-clients", "view-identity-providers", "view-users"}


@pytest.fixture(scope="module")
def monitor_session(settings: Settings, realm: RealmUnderTest) -> requests.Session:
    kc = settings.keycloak
    token = requests.post(
        f"{kc.url}/realms/{kc.realm}/protocol/openid-connect/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "umpass-realm-monitor",
            "client_secret": realm.options.variables["MONITOR_CLIENT_SECRET"],
        },
        timeout=30,
    )
    token.raise_for_status()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
    return session


def test_monitor_holds_view_roles_only(admin: KeycloakAdmin) -> None:
    """What apply's dry run reads: the realm and its flows and user profile (view-realm),
    clients and their service accounts (view-clients), the identity providers
    (view-identity-providers), the service accounts' groups and roles (view-users). No
    manage-* role, directly or through a composite."""
    clients = {c["clientId"]: c for c in admin.get_clients()}
    rm = clients["realm-management"]["id"]
    account = admin.get_client_service_account_user(clients["umpass-realm-monitor"]["id"])
    assert {r["name"] for r in admin.get_client_roles_of_user(account["id"], rm)} == MONITOR_ROLES
    effective = {r["name"] for r in admin.get_composite_client_roles_of_user(account["id"], rm)}
    assert not {r for r in effective if not r.startswith(("view-", "query-"))}
    assert admin.get_user_groups(account["id"]) == []


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "", {"duplicateEmailsAllowed": True}),
        ("POST", "/users", {"username": f"m{secrets.token_hex(3)}", "enabled": True}),
        ("PUT", "/identity-provider/instances/umpass-activation", {"enabled": False}),
        ("PUT", "/users/profile", {"attributes": []}),
        ("POST", "/clients", {"clientId": f"m{secrets.token_hex(3)}"}),
        ("POST", "/partialImport", {"ifResourceExists": "SKIP", "users": []}),
    ],
)
def test_monitor_is_refused_every_write(
    monitor_session: requests.Session, api: str, method: str, path: str, body: dict
) -> None:
    response = monitor_session.request(method, f"{api}{path}", json=body, timeout=30)
    assert response.status_code == 403, response.text


def test_monitor_cannot_grant_itself_more_roles(
    monitor_session: requests.Session, api: str, admin: KeycloakAdmin
) -> None:
    held = _grant_itself(monitor_session, api, admin, "umpass-realm-monitor", "manage-realm")
    assert held == MONITOR_ROLES
