"""The realm as code applies to a real Keycloak, and re-applies with no change."""

from __future__ import annotations

import subprocess

from keycloak import KeycloakAdmin

from keycloak_config.apply import ApplyOptions, apply_realm
from provider.services import Services
from tests.conftest import KeycloakUnderTest, RealmUnderTest
from tests.support.cli import run_module
from tests.support.realm_changes import RealmChanges
from tests.support.students import enrol_student


def test_first_apply_created_everything(realm: RealmUnderTest) -> None:
    changes = realm.first_apply
    assert changes[0] == f"add realm {realm.name} — new: everything the extension needs"
    for client in ("umpass-activation", "umpass-provisioner", "umpass-demo"):
        assert any(line.startswith(f"add client {client}") for line in changes), client
    assert "add user-profile attribute activation_state — admin-only" in changes


def test_second_apply_changes_nothing(realm: RealmUnderTest, admin: KeycloakAdmin) -> None:
    before = admin.get_realm(realm.name)
    assert apply_realm(realm.options).writes() == []
    assert apply_realm(realm.options, dry_run=True).writes() == []
    after = admin.get_realm(realm.name)
    assert before == after


def test_realm_carries_the_policies(realm: RealmUnderTest, admin: KeycloakAdmin) -> None:
    rep = admin.get_realm(realm.name)
    policy = rep["passwordPolicy"]
    for rule in ("length(12)", "maxLength(128)", "notUsername", "notEmail", "passwordBlacklist("):
        assert rule in policy
    assert rep["bruteForceProtected"] is True
    assert rep["failureFactor"] == 5
    assert rep["loginTheme"] == "umpass"
    assert rep["registrationAllowed"] is False


def test_user_profile_declares_admin_only_attributes(
    admin: KeycloakAdmin, realm: RealmUnderTest
) -> None:
    profile = admin.connection.raw_get(f"admin/realms/{realm.name}/users/profile").json()
    attrs = {a["name"]: a for a in profile["attributes"]}
    for name in ("activation_state", "activated_at", "phone_number_verified", "accepted_policies"):
        assert attrs[name]["permissions"]["view"] == ["admin"], name
        assert attrs[name]["permissions"]["edit"] == ["admin"], name
    assert "user" not in attrs["phone_number"]["permissions"]["edit"]
    assert attrs["accepted_policies"]["multivalued"] is True


def test_drift_is_reported_then_repaired(
    realm: RealmUnderTest, admin: KeycloakAdmin, realm_changes: RealmChanges
) -> None:
    realm_changes.update_realm({"failureFactor": 30, "registrationAllowed": True})
    drift = apply_realm(realm.options, dry_run=True).lines()
    # registrationAllowed is the realm's choice: not drift.
    assert drift == ["raise failureFactor: 30 → 5 — failed sign-ins before a lockout"]
    assert admin.get_realm(realm.name)["failureFactor"] == 30  # a dry run writes nothing
    assert apply_realm(realm.options).lines() == drift
    assert admin.get_realm(realm.name)["failureFactor"] == 5
    assert apply_realm(realm.options).writes() == []


def test_extra_role_on_service_account_is_revoked(
    realm: RealmUnderTest, admin: KeycloakAdmin, realm_changes: RealmChanges
) -> None:
    clients = {c["clientId"]: c for c in admin.get_clients()}
    rm = clients["realm-management"]["id"]
    account = admin.get_client_service_account_user(clients["umpass-activation"]["id"])
    realm_changes.grant_client_roles(account["id"], rm, ["manage-clients"])
    assert apply_realm(realm.options).lines() == [
        "remove roles of umpass-activation: manage-clients"
    ]
    held = {r["name"] for r in admin.get_client_roles_of_user(account["id"], rm)}
    assert held == {"query-users", "view-realm"}


def _run_apply(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_module("keycloak_config.apply", env, *args)


def test_cli_check_passes_on_an_applied_realm(
    keycloak_server: KeycloakUnderTest, realm: RealmUnderTest
) -> None:
    result = _run_apply(
        realm.env(keycloak_server), "--check", "--fast-hash", "--theme", "--with-demo"
    )
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout


def test_cli_wrong_admin_password_is_one_line(
    keycloak_server: KeycloakUnderTest, realm: RealmUnderTest
) -> None:
    env = realm.env(keycloak_server, KEYCLOAK_ADMIN_PASSWORD="not-the-password")
    result = _run_apply(env)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "refused the admin credential" in result.stderr
    assert "not-the-password" not in result.stderr


def test_cli_unreachable_keycloak_is_one_line(
    keycloak_server: KeycloakUnderTest, realm: RealmUnderTest
) -> None:
    env = realm.env(keycloak_server, UMPASS_KEYCLOAK_URL="http://127.0.0.1:9")
    result = _run_apply(env)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "cannot reach Keycloak at http://127.0.0.1:9" in result.stderr


def test_cli_missing_credentials_is_one_line() -> None:
    result = _run_apply({})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: KEYCLOAK_ADMIN_USER, KEYCLOAK_ADMIN_PASSWORD, UMPASS_KC_CLIENT_SECRET, "
        "UMPASS_KC_PROVISIONER_SECRET, UMPASS_BROKER_CLIENT_SECRET, "
        "UMPASS_HELPDESK_CLIENT_SECRET not set: see .env.example"
    )


def test_options_from_env_defaults_realm_name() -> None:
    options = ApplyOptions.from_env(
        {
            "KEYCLOAK_ADMIN_USER": "a",
            "KEYCLOAK_ADMIN_PASSWORD": "b",
            "UMPASS_KC_CLIENT_SECRET": "c",
            "UMPASS_KC_PROVISIONER_SECRET": "d",
            "UMPASS_BROKER_CLIENT_SECRET": "e",
            "UMPASS_HELPDESK_CLIENT_SECRET": "f",
            "UMPASS_ENV": "development",
        }
    )
    assert options.realm == "umpass"
    assert options.variables["DEMO_BASE_URL"] == "http://127.0.0.1:5000/demo"
    assert options.variables["ACTIVATION_ISSUER"] == "http://127.0.0.1:5000/oidc"
    assert options.variables["ACTIVATION_BACKCHANNEL"] == "http://127.0.0.1:5000/oidc"


def test_roles_through_groups_or_realm_roles_are_removed(
    realm: RealmUnderTest, admin: KeycloakAdmin, realm_changes: RealmChanges
) -> None:
    clients = {c["clientId"]: c for c in admin.get_clients()}
    rm = clients["realm-management"]["id"]
    account = admin.get_client_service_account_user(clients["umpass-activation"]["id"])
    # Deleted at teardown, pass or fail: a group holding realm-admin must not outlive it.
    group_id = realm_changes.add_group("sneaky-admins")
    admin.assign_group_client_roles(group_id, rm, [admin.get_client_role(rm, "realm-admin")])
    admin.group_user_add(account["id"], group_id)
    realm_changes.add_realm_role("sneaky-role")
    admin.assign_realm_roles(account["id"], [admin.get_realm_role("sneaky-role")])
    assert sorted(apply_realm(realm.options).lines()) == [
        "remove umpass-activation from group sneaky-admins",
        "remove umpass-activation realm roles: sneaky-role",
    ]
    effective = {r["name"] for r in admin.get_composite_client_roles_of_user(account["id"], rm)}
    assert "realm-admin" not in effective
    assert apply_realm(realm.options).writes() == []


def test_helpdesk_client_carries_only_the_console_roles(
    realm: RealmUnderTest, admin: KeycloakAdmin
) -> None:
    client = admin.get_client(admin.get_client_id("umpass-helpdesk"))
    assert client["fullScopeAllowed"] is False
    response = admin.connection.raw_get(
        f"admin/realms/{realm.name}/clients/{client['id']}/scope-mappings/realm"
    )
    assert {r["name"] for r in response.json()} == {"activation-helpdesk", "activation-admin"}


def test_cli_refuses_a_placeholder_client_secret_outside_development(
    keycloak_server: KeycloakUnderTest, realm: RealmUnderTest
) -> None:
    env = realm.env(keycloak_server, UMPASS_KC_PROVISIONER_SECRET="change-me")
    result = _run_apply(env, "--plan")
    assert result.returncode == 2
    assert result.stderr.startswith("error: UMPASS_KC_PROVISIONER_SECRET is a placeholder: ")
    assert result.stderr.strip().count("\n") == 0
    development = _run_apply({**env, "UMPASS_ENV": "development"}, "--plan")
    assert development.returncode == 0, development.stderr


def test_a_student_holding_a_staff_role_is_named_in_the_plan(
    realm: RealmUnderTest,
    admin: KeycloakAdmin,
    realm_changes: RealmChanges,
    services: Services,
) -> None:
    """A member of umpass-students is within the service's reach: one who also works at the
    help desk is named, so an admin can take them out of the group."""
    who = enrol_student(services, "w")
    account = services.keycloak.find_user(who.user_id)
    assert account is not None
    role = admin.get_realm_role("activation-helpdesk")
    realm_changes.on_undo(lambda: admin.delete_realm_roles_of_user(account.id, [role]))
    admin.assign_realm_roles(account.id, [role])
    plan = apply_realm(realm.options, dry_run=True)
    named = [c for c in plan.changes if c.action == "keep" and "holding other roles" in c.subject]
    assert len(named) == 1 and who.user_id in named[0].subject
    assert plan.writes() == []
