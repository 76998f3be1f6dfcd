"""Adding activation to a realm a university already runs, and taking it out again.

The realm (tests.support.university_realm) has its own profile attribute holding data,
an unmanaged attribute, a stricter password policy with history, stricter brute force,
forgotten-password on (apply turns it off: students reset at the service), its own
browser flow with conditional OTP, a second identity provider, other clients and roles,
and a staff account with OTP. The extension's plan
must name exactly what it will do; after `apply` everything of the university's still
works and is unchanged; `--uninstall` brings the realm back, setting by setting.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from keycloak import KeycloakAdmin

from keycloak_config.apply import ApplyError, ApplyOptions, apply_realm, uninstall_realm
from keycloak_config.ownership import ATTRIBUTE
from keycloak_config.plan import Plan
from provider.keycloak import STUDENTS_GROUP
from tests.conftest import KeycloakUnderTest, master_admin
from tests.support.cli import run_module
from tests.support.keycloak_login import authorization_request
from tests.support.university_realm import (
    UniversityRealm,
    build_university_realm,
    realm_snapshot,
    sign_in_through_partner,
    sign_in_with_password_and_otp,
    snapshot_diff,
)

SERVICE = "https://activate.university.example.edu"
STUDENT_PASSWORD = "quartz meadow lantern 2041"


def _env(server: KeycloakUnderTest, realm: str) -> dict[str, str]:
    return {
        "UMPASS_KEYCLOAK_URL": server.url,
        "KEYCLOAK_ADMIN_USER": server.admin_user,
        "KEYCLOAK_ADMIN_PASSWORD": server.admin_password,
        "UMPASS_REALM": realm,
        "UMPASS_BASE_URL": SERVICE,
        "UMPASS_KC_CLIENT_SECRET": secrets.token_urlsafe(24),
        "UMPASS_KC_PROVISIONER_SECRET": secrets.token_urlsafe(24),
        "UMPASS_BROKER_CLIENT_SECRET": secrets.token_urlsafe(24),
        "UMPASS_HELPDESK_CLIENT_SECRET": secrets.token_urlsafe(24),
    }


@dataclass
class Installed:
    uni: UniversityRealm
    env: dict[str, str]
    options: ApplyOptions
    before: dict[str, Any]
    plan: Plan
    after_plan: dict[str, Any]
    applied: Plan
    after_apply: dict[str, Any]


@pytest.fixture(scope="module")
def installed(keycloak_server: KeycloakUnderTest, kc: KeycloakAdmin) -> Iterator[Installed]:
    uni = build_university_realm(kc, keycloak_server.url, f"uni-{secrets.token_hex(3)}")
    try:
        env = _env(keycloak_server, uni.name)
        options = ApplyOptions.from_env(env)
        before = realm_snapshot(kc, uni.name)
        plan = apply_realm(options, dry_run=True)
        after_plan = realm_snapshot(kc, uni.name)
        applied = apply_realm(options)
        after_apply = realm_snapshot(kc, uni.name)
        yield Installed(uni, env, options, before, plan, after_plan, applied, after_apply)
    finally:
        uni.delete(kc)


@pytest.fixture(scope="module")
def uni_admin(keycloak_server: KeycloakUnderTest, installed: Installed) -> KeycloakAdmin:
    admin = master_admin(keycloak_server)
    admin.change_current_realm(installed.uni.name)
    return admin


def test_the_plan_names_exactly_what_apply_will_do(installed: Installed) -> None:
    lines = [line.split(" — ")[0] for line in installed.plan.lines()]
    assert lines == [
        "change adminPermissionsEnabled: off → on",
        "change resetPasswordAllowed: on → off",
        "raise password policy: length(14) and passwordHistory(5) → length(14) and "
        "passwordHistory(5) and maxLength(128) and notUsername(undefined) and "
        "notEmail(undefined) and passwordBlacklist(umpass-common-passwords.txt)",
        "add locales zh-TW, pt",
        "add user-profile attribute activation_state",
        "add user-profile attribute activated_at",
        "add user-profile attribute phone_number",
        "add user-profile attribute phone_number_verified",
        "add user-profile attribute accepted_policies",
        "add user-profile attribute umpass_broker_ticket",
        "add user-profile group umpass",
        "add realm text en/umpassActivationUnavailable",
        "add realm text zh-TW/umpassActivationUnavailable",
        "add realm text pt/umpassActivationUnavailable",
        "add realm text en/umpassPolicyDeclined",
        "add realm text zh-TW/umpassPolicyDeclined",
        "add realm text pt/umpassPolicyDeclined",
        "add realm role activation-helpdesk",
        "add realm role activation-admin",
        "add client scope umpass",
        "add client scope umpass as a realm default scope",
        *(
            f"add client scope umpass as a default scope of {client}"
            for client in (
                *("account", "account-console", "admin-cli", "security-admin-console"),
                *("uni-portal", "uni-reports"),
            )
        ),
        "add client scope umpass-saml",
        "add client scope umpass-saml as a realm default scope",
        "add client umpass-activation",
        "add client umpass-helpdesk",
        "add client umpass-provisioner",
        "add scope of umpass-helpdesk: roles activation-admin, activation-helpdesk",
        "add flow umpass after activation",
        "add flow umpass first broker login",
        "add flow umpass browser",
        "change browserFlow binding: uni browser → umpass browser",
        "add flow umpass direct grant",
        "change directGrantFlow binding: uni direct grant → umpass direct grant",
        "add flow umpass reset credentials",
        "change resetCredentialsFlow binding: reset credentials → umpass reset credentials",
        "add identity provider umpass-activation",
        "add mapper umpass ticket spent of umpass-activation",
        "add flow umpass after other providers",
        "change identity provider partner: post-login flow: (none) → umpass after other providers",
        "add group umpass-students",
        "add admin policy umpass-activation service account",
        "add admin permission umpass-activation manages students: (none) → manage-members, "
        "manage-membership, view, view-members",
        "add roles of umpass-activation: query-users, view-realm",
        "add roles of umpass-provisioner: manage-realm, manage-users, view-realm, view-users",
    ]
    # The realm is stricter than every brute-force floor: nothing of it is lowered.
    kept = [c.subject for c in installed.plan.changes if c.action == "keep"]
    for subject in (
        "failureFactor 3",
        "maxFailureWaitSeconds 1800",
        "waitIncrementSeconds 120",
        "loginTheme keycloak.v2",
        "unmanagedAttributePolicy ADMIN_EDIT",
        "identity providers partner",
    ):
        assert subject in kept, subject
    assert any(s.startswith("user-profile attributes ") and "department" in s for s in kept)
    assert any(s.startswith("clients ") and "uni-portal, uni-reports" in s for s in kept)
    browser = next(c for c in installed.plan.changes if c.subject == "flow umpass browser")
    assert browser.why.startswith("built from 'uni browser', keeping auth-cookie")
    assert "auth-otp-form" in browser.why
    text = installed.plan.render("Plan")
    assert "Leave alone (" in text and "Raise to the extension's floor" in text


def test_the_plan_wrote_nothing_and_apply_did_what_it_said(installed: Installed) -> None:
    assert snapshot_diff(installed.before, installed.after_plan) == []
    assert installed.applied.lines() == installed.plan.lines()


def test_only_what_the_extension_manages_changed(installed: Installed) -> None:
    ours = (
        "activation_state",
        "activated_at",
        "phone_number",
        "accepted_policies",
        "umpass_broker_ticket",
    )
    allowed = (
        # Fine-grained admin permissions v2: Keycloak makes its client when they are on.
        "realm.adminPermissionsEnabled: false → true",
        "realm.resetPasswordAllowed: true → false",
        "realm.adminPermissionsClient: added ",
        "clients.admin-permissions: added ",
        "clientRoles.admin-permissions: added ",
        "realm.passwordPolicy: ",
        "realm.supportedLocales: ",
        f'realm.attributes["{ATTRIBUTE}"]: added ',
        "bindings.",
        *(f"userProfile.attributes.{name}" for name in ours),  # added, never changed
        "userProfile.attributeOrder: ",
        "userProfile.groups.umpass: added ",
        "userProfile.groupOrder: ",
        'flows["umpass ',
        "clients.umpass-",
        "clientRoles.umpass-",
        "roles.activation-",
        "identityProviders.umpass-activation: added ",
        'identityProviders.partner.postBrokerLoginFlowAlias: added "umpass after other providers ',
        "localization.",
        'clientScopes.realmDefault: added "umpass", added "umpass-saml"',
        "clientScopes.scopes.umpass: added ",
        "clientScopes.scopes.umpass-saml: added ",
    )
    changed = snapshot_diff(installed.before, installed.after_apply)
    # Each of the realm's clients gains the claims' scope, and nothing else of its scopes.
    default_scope = re.compile(r'clients\.[\w-]+\.defaultClientScopes: added "umpass"$')
    assert [
        line for line in changed if not line.startswith(allowed) and not default_scope.match(line)
    ] == []
    assert not [line for line in changed if ": removed" in line]
    assert not [line for line in changed if "department" in line and "Order" not in line]
    # The realm's own attribute order is kept; ours come after it.
    order = next(line for line in changed if line.startswith("userProfile.attributeOrder"))
    assert '→ "username, email, firstName, lastName, department, activation_state' in order
    assert installed.after_apply["users"] == installed.before["users"]


def test_staff_attributes_stay_visible_and_unchanged(
    installed: Installed, uni_admin: KeycloakAdmin
) -> None:
    staff = uni_admin.get_users({"username": installed.uni.staff_username, "exact": True})[0]
    attributes = uni_admin.get_user(staff["id"])["attributes"]
    assert attributes["department"] == ["Physics"]
    assert attributes["legacy_id"] == ["L-0042"]  # unmanaged: the realm's policy still shows it


def test_the_stricter_password_policy_and_brute_force_stay(
    installed: Installed, uni_admin: KeycloakAdmin
) -> None:
    realm = uni_admin.get_realm(installed.uni.name)
    policy = realm["passwordPolicy"]
    assert policy.startswith("length(14) and passwordHistory(5) and ")
    assert "length(12)" not in policy
    assert (realm["failureFactor"], realm["waitIncrementSeconds"]) == (3, 120)
    assert (realm["maxFailureWaitSeconds"], realm["maxDeltaTimeSeconds"]) == (1800, 86400)
    assert realm["resetPasswordAllowed"] is False  # students reset at the service (uninstall: on)
    assert realm["loginTheme"] == "keycloak.v2"
    assert set(realm["supportedLocales"]) == {"en", "de", "zh-TW", "pt"}


def test_staff_still_signs_in_with_password_then_otp(installed: Installed) -> None:
    result = installed.uni.sign_in_staff()
    assert result.ok, result.error
    # Username first now, then the realm's own password and OTP steps.
    assert result.pages == ["username", "password", "otp"]


def test_the_other_identity_provider_still_works(installed: Installed) -> None:
    result = installed.uni.sign_in_partner_user()
    assert result.ok, result.error


# Switching fine-grained admin permissions on makes Keycloak create a client it then refuses
# to delete (26.7); uninstall switches them off and removes the extension's permission in it.
KEYCLOAK_KEEPS = (
    "realm.adminPermissionsClient: added ",
    "clients.admin-permissions: added ",
    "clientRoles.admin-permissions: added ",
)


def _pending_student(admin: KeycloakAdmin, user_id: str) -> str:
    return admin.create_user(
        {
            "username": user_id,
            "enabled": True,
            "email": f"{user_id}@students.example.edu",
            "firstName": "New",
            "lastName": "Student",
            "attributes": {"activation_state": ["pending"], "phone_number": ["+85361234567"]},
            "groups": [f"/{STUDENTS_GROUP}"],  # as the intake import enrols them
        }
    )


def test_a_pending_student_is_sent_to_activation(
    installed: Installed, uni_admin: KeycloakAdmin
) -> None:
    user_id = f"s{secrets.token_hex(3)}"
    _pending_student(uni_admin, user_id)
    result = sign_in_with_password_and_otp(
        installed.uni.server_url,
        installed.uni.name,
        user_id,
        "no password: never asked",
        None,
        client_id=installed.uni.portal_client_id,
        redirect_uri=installed.uni.portal_redirect_uri,
    )
    assert not result.ok
    assert "password" not in result.pages
    assert result.location.startswith(f"{SERVICE}/oidc/authorize?"), result.location


def test_a_pending_student_gets_no_token_by_password_grant(
    installed: Installed, uni_admin: KeycloakAdmin, keycloak_server: KeycloakUnderTest
) -> None:
    user_id = f"s{secrets.token_hex(3)}"
    uuid = _pending_student(uni_admin, user_id)
    uni_admin.set_user_password(uuid, STUDENT_PASSWORD, temporary=False)
    token_url = f"{keycloak_server.url}/realms/{installed.uni.name}/protocol/openid-connect/token"
    grant = {
        "grant_type": "password",
        "client_id": "admin-cli",
        "username": user_id,
        "password": STUDENT_PASSWORD,
    }
    refused = requests.post(token_url, data=grant, timeout=30)
    assert refused.status_code in (400, 401) and "access_token" not in refused.text
    # The refusal counts as a failed sign-in for brute-force detection, recorded after the
    # answer; under load it has also left the account briefly locked (quick-login check)
    # when the next grant came. Wait for it, then clear it as the help desk would, so the
    # next grant tests only the pending check.
    deadline = time.monotonic() + 30
    while uni_admin.get_bruteforce_detection_status(uuid)["numFailures"] < 1:
        assert time.monotonic() < deadline, "the refusal was never counted"
        time.sleep(0.05)  # ok: a poll interval under the deadline above
    uni_admin.clear_bruteforce_attempts_for_user(uuid)
    _set_state(uni_admin, uuid, "active")
    allowed = requests.post(token_url, data=grant, timeout=30)
    assert allowed.status_code == 200, allowed.text  # the refusal was the pending check


def _set_state(admin: KeycloakAdmin, uuid: str, state: str) -> None:
    account = admin.get_user(uuid)  # a PUT replaces every attribute: send them all
    account["attributes"]["activation_state"] = [state]
    admin.update_user(uuid, account)


def test_a_pending_account_linked_to_another_provider_is_refused_there(
    installed: Installed, uni_admin: KeycloakAdmin, keycloak_server: KeycloakUnderTest
) -> None:
    """Keycloak runs no browser flow after a broker callback: the other provider's
    post-login flow is where a pending account is stopped."""
    uni = installed.uni
    partner = master_admin(keycloak_server)
    partner.change_current_realm(uni.partner_realm)
    username, password = f"p{secrets.token_hex(3)}", "partner " + secrets.token_urlsafe(12)
    partner_id = partner.create_user(
        {
            "username": username,
            "enabled": True,
            "email": f"{username}@partner.example.org",
            "emailVerified": True,
            "firstName": "Linked",
            "lastName": "Student",
            "credentials": [{"type": "password", "value": password, "temporary": False}],
        }
    )
    student = _pending_student(uni_admin, f"s{secrets.token_hex(3)}")
    link = {"identityProvider": uni.partner_idp_alias, "userId": partner_id, "userName": username}
    response = uni_admin.connection.raw_post(
        f"admin/realms/{uni.name}/users/{student}/federated-identity/{uni.partner_idp_alias}",
        data=json.dumps(link),
    )
    assert response.status_code < 300, response.text

    def through_partner() -> Any:
        return sign_in_through_partner(
            uni.server_url,
            uni.name,
            username,
            password,
            client_id=uni.portal_client_id,
            redirect_uri=uni.portal_redirect_uri,
            idp_alias=uni.partner_idp_alias,
        )

    refused = through_partner()
    assert not refused.ok and refused.tokens is None
    assert "Your account is not active yet" in refused.page  # the realm text, any theme
    assert f'href="{SERVICE}/activate/"' in refused.page  # a link the theme keeps
    _set_state(uni_admin, student, "active")
    assert through_partner().ok  # the refusal was the pending check


def test_a_session_of_an_account_set_back_to_pending_is_refused(
    installed: Installed, uni_admin: KeycloakAdmin
) -> None:
    """The final check of the browser flow: a session cookie is a way in that asks for
    no username, so a pending account arriving with one is stopped there."""
    uni = installed.uni
    user_id = f"s{secrets.token_hex(3)}"
    student = _pending_student(uni_admin, user_id)
    uni_admin.set_user_password(student, STUDENT_PASSWORD, temporary=False)
    _set_state(uni_admin, student, "active")
    first = sign_in_with_password_and_otp(
        uni.server_url,
        uni.name,
        user_id,
        STUDENT_PASSWORD,
        None,
        client_id=uni.portal_client_id,
        redirect_uri=uni.portal_redirect_uri,
    )
    assert first.ok and first.session is not None, first.error
    _set_state(uni_admin, student, "pending")
    params, _ = authorization_request(uni.portal_client_id, uni.portal_redirect_uri)
    again = first.session.get(
        f"{uni.server_url}/realms/{uni.name}/protocol/openid-connect/auth",
        params=params,
        allow_redirects=False,
        timeout=30,
    )
    assert not again.is_redirect, again.headers.get("Location")
    assert "Your account is not active yet" in again.text
    assert 'name="password"' not in again.text


def test_a_second_apply_changes_nothing(
    installed: Installed, keycloak_server: KeycloakUnderTest
) -> None:
    assert apply_realm(installed.options).writes() == []
    result = run_module("keycloak_config.apply", installed.env, "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "up to date" in result.stdout


def test_uninstall_returns_the_realm_to_what_it_was(
    keycloak_server: KeycloakUnderTest, kc: KeycloakAdmin
) -> None:
    uni = build_university_realm(kc, keycloak_server.url, f"uni-{secrets.token_hex(3)}")
    try:
        before = realm_snapshot(kc, uni.name)
        options = ApplyOptions.from_env(_env(keycloak_server, uni.name))
        apply_realm(options)
        admin = master_admin(keycloak_server)
        admin.change_current_realm(uni.name)
        student = _pending_student(admin, f"s{secrets.token_hex(3)}")

        planned = uninstall_realm(options, dry_run=True)
        assert realm_snapshot(kc, uni.name) != before  # planning undid nothing
        done = uninstall_realm(options)
        assert done.lines() == planned.lines()
        # Kept by default: the activation attributes and the values on accounts.
        left = snapshot_diff(before, realm_snapshot(kc, uni.name))
        assert left and all(
            line.startswith(("userProfile.", f'realm.attributes["{ATTRIBUTE}"]', *KEYCLOAK_KEEPS))
            for line in left
        ), left
        assert admin.get_user(student)["attributes"]["activation_state"] == ["pending"]

        uninstall_realm(options, remove_data=True)
        left = snapshot_diff(before, realm_snapshot(kc, uni.name))
        assert [line for line in left if not line.startswith(KEYCLOAK_KEEPS)] == []
        account = admin.get_user(student)
        assert account["enabled"] is True and "activation_state" not in (
            account.get("attributes") or {}
        )
        result = uni.sign_in_staff()
        assert result.ok and result.pages == ["username-password", "otp"], result.error
    finally:
        uni.delete(kc)


def test_a_browser_flow_the_extension_cannot_carry_is_refused_untouched(
    keycloak_server: KeycloakUnderTest, kc: KeycloakAdmin
) -> None:
    with _small_realm(kc, keycloak_server, "kerb") as (admin, name):
        admin.create_authentication_flow(
            {"alias": "kerberos only", "providerId": "basic-flow", "topLevel": True}
        )
        admin.create_authentication_flow_execution({"provider": "auth-spnego"}, "kerberos only")
        admin.update_realm(name, {"browserFlow": "kerberos only"})
        _refused_untouched(keycloak_server, kc, name, "has no enabled username form")


def _apply_on_a_terminal(env: dict[str, str], answer: str) -> tuple[int, str]:
    """`apply` with its stdin on a pseudo-terminal, as an admin at a shell runs it."""
    controller, terminal = os.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "keycloak_config.apply"],
            env={"PATH": "/usr/bin:/bin", **env},
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        os.write(controller, answer.encode() + b"\n")
        output, _ = process.communicate(timeout=120)
        return process.returncode, output
    finally:
        os.close(controller)
        os.close(terminal)


def test_apply_asks_on_a_terminal_and_needs_yes_elsewhere(
    keycloak_server: KeycloakUnderTest, kc: KeycloakAdmin
) -> None:
    name = f"ask-{secrets.token_hex(3)}"
    env = _env(keycloak_server, name)
    try:
        _refused_without_a_yes(env, name, kc)
    finally:
        if name in {r["realm"] for r in kc.get_realms()}:
            kc.delete_realm(name)


def _refused_without_a_yes(env: dict[str, str], name: str, kc: KeycloakAdmin) -> None:
    status, output = _apply_on_a_terminal(env, "n")
    assert status == 1, output
    assert f"Apply the plan above to realm {name} (1 change)? [y/N]" in output
    assert "nothing changed" in output
    assert name not in {r["realm"] for r in kc.get_realms()}

    piped = run_module("keycloak_config.apply", env)
    assert piped.returncode == 2
    assert piped.stderr.strip() == (
        "error: not a terminal, so the plan cannot be confirmed: "
        "read it with --plan, then run with --yes"
    )
    assert name not in {r["realm"] for r in kc.get_realms()}

    planned = run_module("keycloak_config.apply", env, "--plan")
    assert planned.returncode == 0 and f"add realm {name}" not in planned.stdout
    assert f"  - realm {name} — new: everything the extension needs" in planned.stdout
    assert name not in {r["realm"] for r in kc.get_realms()}


@contextmanager
def _small_realm(
    kc: KeycloakAdmin, server: KeycloakUnderTest, prefix: str
) -> Iterator[tuple[KeycloakAdmin, str]]:
    """A bare realm of the test's own, deleted afterwards; an admin working in it."""
    name = f"{prefix}-{secrets.token_hex(3)}"
    kc.create_realm({"realm": name, "enabled": True})
    try:
        admin = master_admin(server)
        admin.change_current_realm(name)
        yield admin, name
    finally:
        kc.delete_realm(name)


def _refused_untouched(server: KeycloakUnderTest, kc: KeycloakAdmin, name: str, match: str) -> None:
    before = realm_snapshot(kc, name, users=())
    with pytest.raises(ApplyError, match=match) as refused:
        apply_realm(ApplyOptions.from_env(_env(server, name)))
    assert "\n" not in str(refused.value)
    assert snapshot_diff(before, realm_snapshot(kc, name, users=())) == []


def test_a_client_overriding_the_sign_in_flow_is_refused_untouched(
    keycloak_server: KeycloakUnderTest, kc: KeycloakAdmin
) -> None:
    with _small_realm(kc, keycloak_server, "override") as (admin, name):
        browser = next(f for f in admin.get_authentication_flows() if f["alias"] == "browser")
        admin.create_client(
            {
                "clientId": "legacy-portal",
                "publicClient": True,
                "redirectUris": ["http://127.0.0.1:5998/*"],
                "authenticationFlowBindingOverrides": {"browser": browser["id"]},
            }
        )
        _refused_untouched(
            keycloak_server, kc, name, r"legacy-portal \(browser: 'browser'\) override"
        )


def test_accounts_holding_an_attribute_the_extension_would_declare_are_refused(
    keycloak_server: KeycloakUnderTest, kc: KeycloakAdmin
) -> None:
    with _small_realm(kc, keycloak_server, "held") as (admin, name):
        path = f"admin/realms/{name}/users/profile"
        profile = admin.connection.raw_get(path).json()
        profile["unmanagedAttributePolicy"] = "ENABLED"
        admin.connection.raw_put(path, data=json.dumps(profile))
        admin.create_user(
            {"username": "legacy", "enabled": True, "attributes": {"phone_number": ["0800 1"]}}
        )
        _refused_untouched(keycloak_server, kc, name, r"phone_number \(1 accounts\)")


def test_every_other_provider_of_a_federation_gets_the_check_and_gets_it_back(
    keycloak_server: KeycloakUnderTest, kc: KeycloakAdmin
) -> None:
    """Keycloak lists at most 100 identity providers a page; a SAML federation has more."""
    with _small_realm(kc, keycloak_server, "federation") as (admin, name):
        admin.create_authentication_flow(
            {"alias": "their post-login", "providerId": "basic-flow", "topLevel": True}
        )
        admin.create_authentication_flow_execution(
            {"provider": "allow-access-authenticator"}, "their post-login"
        )
        config = {
            "authorizationUrl": "https://idp.example.org/a",
            "tokenUrl": "https://idp.example.org/t",
            "clientId": "c",
            "clientSecret": "s",
        }
        for n in range(101):
            provider = {
                "alias": f"p{n:03}",
                "providerId": "oidc",
                "enabled": True,
                "config": config,
            }
            if n == 42:
                provider["postBrokerLoginFlowAlias"] = "their post-login"
            admin.create_idp(provider)
        options = ApplyOptions.from_env(_env(keycloak_server, name))
        planned = apply_realm(options).lines()
        post = [line for line in planned if ": post-login flow" in line]
        assert len(post) == 101
        assert (
            "change identity provider p042: post-login flow: their post-login → "
            "umpass after other providers after their post-login — a pending account "
            "signing in through it is refused"
        ) in post
        assert apply_realm(options).writes() == []
        ours = admin.get_idp("p042")["postBrokerLoginFlowAlias"]
        steps = [
            e.get("providerId") or e["displayName"].split(" :: ")[-1]
            for e in admin.get_authentication_flow_executions(ours)
            if e["level"] == 0
        ]
        assert steps == [
            "pending: refused",
            "the provider's own steps",
            "allow-access-authenticator",
            "umpass-policy-gate",  # its sign-ins never run the browser flow
        ]

        uninstall_realm(options, remove_data=True)
        assert admin.get_idp("p042")["postBrokerLoginFlowAlias"] == "their post-login"
        assert not admin.get_idp("p100").get("postBrokerLoginFlowAlias")
