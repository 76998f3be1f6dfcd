"""An existing university realm, as its IT admin has it before our extension is installed.

`build_university_realm` creates it in a real Keycloak through the admin REST API only:
realm settings (password policy, brute-force protection, locales), a user profile with a
declared attribute of the university's own, copied browser and direct-grant flows bound
to the realm, a second identity provider (a partner realm), clients and roles, and a staff
account with a password and a TOTP authenticator. `realm_snapshot` and `snapshot_diff`
say setting by setting what an install and an uninstall changed. The sign-in helpers walk
Keycloak's login pages over plain HTTP, the way a browser would, without one.
"""

from __future__ import annotations

import json
import re
import secrets
import string
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, quote, urlparse

import requests
from keycloak import KeycloakAdmin

from tests.support.keycloak_login import authorization_request
from tests.support.totp import totp

PORTAL_CLIENT = "uni-portal"
PORTAL_CALLBACK = "http://127.0.0.1:5998/portal/callback"
PARTNER_IDP = "partner"
PASSWORD_POLICY = "length(14) and passwordHistory(5)"
STAFF_USERNAME = "staff1"
PARTNER_USERNAME = "partner-user"
# Realm-level message overrides the university keeps (Realm settings → Localization).
LOCALIZATION_TEXTS = {
    "en": {"uniServiceDesk": "IT Service Desk, extension 4242"},
    "de": {"uniServiceDesk": "IT-Servicedesk, Durchwahl 4242"},
}


@dataclass(frozen=True)
class UniversityRealm:
    """Everything a test needs to sign in to, inspect and delete the built realms."""

    server_url: str
    name: str
    partner_realm: str
    browser_flow: str
    direct_grant_flow: str
    staff_username: str
    staff_password: str
    staff_email: str
    staff_totp_secret: str  # Keycloak's raw secret string (tests.support.totp takes it as is)
    staff_department: str
    staff_legacy_id: str
    partner_idp_alias: str
    partner_username: str
    partner_password: str
    partner_email: str
    broker_client_id: str
    broker_client_secret: str
    portal_client_id: str
    portal_redirect_uri: str
    reports_client_id: str
    reports_client_secret: str
    faculty_role: str
    portal_editor_role: str

    @property
    def realms(self) -> tuple[str, str]:
        return (self.name, self.partner_realm)

    def sign_in_staff(self, *, totp_secret: str | None = None) -> SignInResult:
        """staff1 at the portal: password, then the OTP (from another secret if given)."""
        return sign_in_with_password_and_otp(
            self.server_url,
            self.name,
            self.staff_username,
            self.staff_password,
            totp_secret if totp_secret is not None else self.staff_totp_secret,
            client_id=self.portal_client_id,
            redirect_uri=self.portal_redirect_uri,
        )

    def sign_in_partner_user(self) -> SignInResult:
        return sign_in_through_partner(
            self.server_url,
            self.name,
            self.partner_username,
            self.partner_password,
            client_id=self.portal_client_id,
            redirect_uri=self.portal_redirect_uri,
            idp_alias=self.partner_idp_alias,
        )

    def delete(self, master_admin: KeycloakAdmin) -> None:
        """Remove both realms; a realm already gone is fine (cleanup after a failed build)."""
        for realm in self.realms:
            _delete_realm(master_admin, realm)


# --- building ---------------------------------------------------------------------------


def build_university_realm(
    master_admin: KeycloakAdmin, server_url: str, name: str
) -> UniversityRealm:
    """Create realm `name` and its partner realm `{name}-partner`; on failure remove both."""
    server_url = server_url.rstrip("/")
    uni = UniversityRealm(
        server_url=server_url,
        name=name,
        partner_realm=f"{name}-partner",
        browser_flow="uni browser",
        direct_grant_flow="uni direct grant",
        staff_username=STAFF_USERNAME,
        staff_password="granite " + secrets.token_urlsafe(12),
        staff_email=f"{STAFF_USERNAME}@university.example.edu",
        staff_totp_secret=_keycloak_style_secret(),
        staff_department="Physics",
        staff_legacy_id="L-0042",
        partner_idp_alias=PARTNER_IDP,
        partner_username=PARTNER_USERNAME,
        partner_password="partner " + secrets.token_urlsafe(12),
        partner_email=f"{PARTNER_USERNAME}@partner.example.org",
        broker_client_id="uni-broker",
        broker_client_secret=secrets.token_urlsafe(24),
        portal_client_id=PORTAL_CLIENT,
        portal_redirect_uri=PORTAL_CALLBACK,
        reports_client_id="uni-reports",
        reports_client_secret=secrets.token_urlsafe(24),
        faculty_role="faculty",
        portal_editor_role="editor",
    )
    created: list[str] = []  # a realm that was there before (409) is not ours to delete
    try:
        _create_realm(master_admin, uni)
        created.append(uni.name)
        _extend_user_profile(master_admin, uni)
        _copy_and_bind_flows(master_admin, uni)
        master_admin.create_realm(
            {"realm": uni.partner_realm, "enabled": True, "displayName": "Partner"}
        )
        created.append(uni.partner_realm)
        _create_partner(master_admin, uni)
        _create_clients_and_roles(master_admin, uni)
        _create_staff(master_admin, uni)
        _add_localization_texts(master_admin, uni)
    except BaseException:
        for realm in created:
            _delete_realm(master_admin, realm)
        raise
    return uni


def _keycloak_style_secret() -> str:
    # What Keycloak generates for a new authenticator: 20 random letters and digits.
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(20))


def _create_realm(admin: KeycloakAdmin, uni: UniversityRealm) -> None:
    admin.create_realm(
        {
            "realm": uni.name,
            "enabled": True,
            "displayName": "University",
            "passwordPolicy": PASSWORD_POLICY,
            "bruteForceProtected": True,
            "failureFactor": 3,
            "waitIncrementSeconds": 120,
            "maxFailureWaitSeconds": 1800,
            "minimumQuickLoginWaitSeconds": 120,
            "quickLoginCheckMilliSeconds": 1000,
            "maxDeltaTimeSeconds": 86400,
            "permanentLockout": False,
            "resetPasswordAllowed": True,
            "loginTheme": "keycloak.v2",
            "internationalizationEnabled": True,
            "supportedLocales": ["en", "de"],
            "defaultLocale": "en",
            "sslRequired": "external",
            "registrationAllowed": False,
        }
    )


def _extend_user_profile(admin: KeycloakAdmin, uni: UniversityRealm) -> None:
    path = f"admin/realms/{uni.name}/users/profile"
    profile = _get(admin, path)
    profile["attributes"].append(
        {
            "name": "department",
            "displayName": "Department",
            "permissions": {"view": ["admin", "user"], "edit": ["admin"]},
            "validations": {"length": {"max": 64}},
            "annotations": {"inputHelperTextBefore": "Your department"},
            "group": "staff-data",
            "multivalued": False,
        }
    )
    profile["groups"].append(
        {
            "name": "staff-data",
            "displayHeader": "Staff data",
            "displayDescription": "What the university's HR system keeps about staff",
        }
    )
    # Attributes the profile does not declare (legacy_id) stay, editable by admins only.
    profile["unmanagedAttributePolicy"] = "ADMIN_EDIT"
    _put(admin, path, profile)


def _copy_and_bind_flows(admin: KeycloakAdmin, uni: UniversityRealm) -> None:
    flows = f"admin/realms/{uni.name}/authentication/flows"
    for built_in, copy in (("browser", uni.browser_flow), ("direct grant", uni.direct_grant_flow)):
        _post(admin, f"{flows}/{quote(built_in)}/copy", {"newName": copy})
    # Keycloak 26.7's copy keeps the conditional 2FA sub-flow (condition user configured,
    # condition credential "not a passkey", OTP form ALTERNATIVE, WebAuthn and recovery
    # codes DISABLED), so an account with an OTP credential is asked for it after the
    # password. Only an OTP form that a future Keycloak copies disabled is switched on.
    executions = _get(admin, f"{flows}/{quote(uni.browser_flow)}/executions")
    otp = [e for e in executions if e.get("providerId") == "auth-otp-form"]
    assert len(otp) == 1, f"the copied browser flow has {len(otp)} OTP forms"
    if otp[0]["requirement"] == "DISABLED":
        _put(
            admin,
            f"{flows}/{quote(uni.browser_flow)}/executions",
            {**otp[0], "requirement": "ALTERNATIVE"},
        )
    admin.update_realm(
        uni.name, {"browserFlow": uni.browser_flow, "directGrantFlow": uni.direct_grant_flow}
    )


def _create_partner(admin: KeycloakAdmin, uni: UniversityRealm) -> None:
    with _in_realm(admin, uni.partner_realm):
        admin.create_user(
            {
                "username": uni.partner_username,
                "enabled": True,
                "email": uni.partner_email,
                "emailVerified": True,
                "firstName": "Pat",
                "lastName": "Partner",
                "credentials": [
                    {"type": "password", "value": uni.partner_password, "temporary": False}
                ],
            }
        )
        admin.create_client(
            {
                "clientId": uni.broker_client_id,
                "name": "University broker",
                "protocol": "openid-connect",
                "publicClient": False,
                "secret": uni.broker_client_secret,
                "standardFlowEnabled": True,
                "directAccessGrantsEnabled": False,
                "redirectUris": [
                    f"{uni.server_url}/realms/{uni.name}/broker/{uni.partner_idp_alias}/endpoint"
                ],
            }
        )
    issuer = f"{uni.server_url}/realms/{uni.partner_realm}"
    endpoints = f"{issuer}/protocol/openid-connect"
    with _in_realm(admin, uni.name):
        # No firstBrokerLoginFlowAlias: the provider follows the realm's own binding
        # (firstBrokerLoginFlow, "first broker login" unless the admin changed it).
        admin.create_idp(
            {
                "alias": uni.partner_idp_alias,
                "displayName": "Partner University",
                "providerId": "oidc",
                "enabled": True,
                "trustEmail": False,
                "storeToken": False,
                "config": {
                    "issuer": issuer,
                    "authorizationUrl": f"{endpoints}/auth",
                    "tokenUrl": f"{endpoints}/token",
                    "userInfoUrl": f"{endpoints}/userinfo",
                    "jwksUrl": f"{endpoints}/certs",
                    "logoutUrl": f"{endpoints}/logout",
                    "useJwksUrl": "true",
                    "validateSignature": "true",
                    "clientId": uni.broker_client_id,
                    "clientSecret": uni.broker_client_secret,
                    "clientAuthMethod": "client_secret_post",
                    "defaultScope": "openid profile email",
                    "syncMode": "IMPORT",
                },
            }
        )


def _create_clients_and_roles(admin: KeycloakAdmin, uni: UniversityRealm) -> None:
    with _in_realm(admin, uni.name):
        admin.create_client(
            {
                "clientId": uni.portal_client_id,
                "name": "University portal",
                "protocol": "openid-connect",
                "publicClient": True,
                "standardFlowEnabled": True,
                "directAccessGrantsEnabled": False,
                "redirectUris": [uni.portal_redirect_uri],
                "webOrigins": ["http://127.0.0.1:5998"],
                "attributes": {
                    "pkce.code.challenge.method": "S256",
                    "post.logout.redirect.uris": "http://127.0.0.1:5998/portal/*",
                },
            }
        )
        admin.create_client(
            {
                "clientId": uni.reports_client_id,
                "name": "Reporting",
                "protocol": "openid-connect",
                "publicClient": False,
                "secret": uni.reports_client_secret,
                "serviceAccountsEnabled": True,
                "standardFlowEnabled": False,
                "directAccessGrantsEnabled": False,
            }
        )
        # The reporting job reads users, as such jobs do.
        reports = admin.get_client_id(uni.reports_client_id)
        management = admin.get_client_id("realm-management")
        assert reports and management
        admin.assign_client_role(
            admin.get_client_service_account_user(reports)["id"],
            management,
            [admin.get_client_role(management, "view-users")],
        )
        admin.create_realm_role({"name": uni.faculty_role, "description": "Teaching staff"})
        portal = admin.get_client_id(uni.portal_client_id)
        assert portal
        admin.create_client_role(
            portal, {"name": uni.portal_editor_role, "description": "Edits portal pages"}
        )


def _create_staff(admin: KeycloakAdmin, uni: UniversityRealm) -> None:
    # The admin API cannot run "Configure OTP", but it accepts an otp credential inside
    # the new user's representation (POST /users; Keycloak 26.7 stores it as given, as
    # partialImport would): secretData.value is the raw secret, credentialData the
    # algorithm. The fixture's own test signs in with a code computed from it.
    with _in_realm(admin, uni.name):
        user_id = admin.create_user(
            {
                "username": uni.staff_username,
                "enabled": True,
                "email": uni.staff_email,
                "emailVerified": True,
                "firstName": "Ada",
                "lastName": "Lovelace",
                "attributes": {
                    "department": [uni.staff_department],
                    "legacy_id": [uni.staff_legacy_id],
                },
                "credentials": [
                    {"type": "password", "value": uni.staff_password, "temporary": False},
                    {
                        "type": "otp",
                        "userLabel": "Phone",
                        "secretData": json.dumps({"value": uni.staff_totp_secret}),
                        "credentialData": json.dumps(
                            {
                                "subType": "totp",
                                "digits": 6,
                                "counter": 0,
                                "period": 30,
                                "algorithm": "HmacSHA1",
                            }
                        ),
                    },
                ],
            }
        )
        admin.assign_realm_roles(user_id, [admin.get_realm_role(uni.faculty_role)])


def _add_localization_texts(admin: KeycloakAdmin, uni: UniversityRealm) -> None:
    # POST .../localization/{locale} takes a JSON map (the console's import); the
    # one-key PUT wants text/plain, which python-keycloak's raw_put cannot send.
    for locale, texts in LOCALIZATION_TEXTS.items():
        _post(admin, f"admin/realms/{uni.name}/localization/{locale}", texts)


@contextmanager
def _in_realm(admin: KeycloakAdmin, realm: str) -> Iterator[KeycloakAdmin]:
    """The admin's calls go to `realm` for a while; the caller's realm is put back."""
    previous = admin.get_current_realm()
    admin.change_current_realm(realm)
    try:
        yield admin
    finally:
        admin.change_current_realm(previous or "master")


def _delete_realm(admin: KeycloakAdmin, realm: str) -> None:
    response = admin.connection.raw_delete(f"admin/realms/{quote(realm)}")
    if response.status_code not in (204, 404):
        _check(response, "DELETE", realm)


# --- admin REST -------------------------------------------------------------------------


def _check(response: requests.Response, method: str, path: str) -> None:
    if response.status_code >= 300:
        raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:500]}")


def _get(admin: KeycloakAdmin, path: str, **params: str) -> Any:
    response = admin.connection.raw_get(path, **params)
    _check(response, "GET", path)
    return response.json()


def _post(admin: KeycloakAdmin, path: str, payload: Any) -> None:
    _check(admin.connection.raw_post(path, data=json.dumps(payload)), "POST", path)


def _put(admin: KeycloakAdmin, path: str, payload: Any) -> None:
    _check(admin.connection.raw_put(path, data=json.dumps(payload)), "PUT", path)


# --- snapshot ---------------------------------------------------------------------------


def realm_snapshot(
    master_admin: KeycloakAdmin, name: str, *, users: Iterable[str] = (STAFF_USERNAME,)
) -> dict[str, Any]:
    """The realm's settings, setting by setting, in a form `snapshot_diff` compares.

    Things are keyed by their names (clientId, alias, role name), never by Keycloak's ids,
    so a thing deleted and recreated identically compares equal. Order that matters to
    Keycloak (flow steps, profile attributes, required actions) is kept as an "order"
    string, since lists of plain values compare as sets.
    """
    base = f"admin/realms/{quote(name)}"
    clients = _get(master_admin, f"{base}/clients")
    client_ids = {c["id"]: c["clientId"] for c in clients}
    realm = _get(master_admin, base)
    flows = _flows_snapshot(master_admin, base)
    # Only identifiers go; every other key is a setting. None of the realm's keys change
    # on their own between two reads (two snapshots in a row are compared by a test), so
    # nothing else needs dropping. The default role is kept by name: its composites are
    # under roles. The flow bindings (browserFlow, …) move to a section of their own.
    realm.pop("id", None)
    if isinstance(realm.get("defaultRole"), dict):
        realm["defaultRole"] = realm["defaultRole"]["name"]
    # (accessTokenLifespanForImplicitFlow ends in "Flow" too, but is a number).
    bindings = {
        k: realm.pop(k) for k in sorted(realm) if k.endswith("Flow") and isinstance(realm[k], str)
    }
    return {
        "realm": realm,
        "bindings": bindings,
        "userProfile": _profile_snapshot(_get(master_admin, f"{base}/users/profile")),
        "flows": flows,
        "requiredActions": _required_actions_snapshot(master_admin, base),
        "clients": {
            c["clientId"]: _client_snapshot(master_admin, base, c, client_ids) for c in clients
        },
        "clientScopes": _client_scopes_snapshot(master_admin, base),
        "roles": {
            r["name"]: _role_snapshot(master_admin, base, r, client_ids)
            for r in _get(master_admin, f"{base}/roles", briefRepresentation="false")
        },
        "clientRoles": {
            c["clientId"]: {
                r["name"]: _role_snapshot(master_admin, base, r, client_ids)
                for r in _get(
                    master_admin, f"{base}/clients/{c['id']}/roles", briefRepresentation="false"
                )
            }
            for c in clients
        },
        "identityProviders": _idps_snapshot(master_admin, base),
        "components": _components_snapshot(master_admin, base),
        "localization": {
            locale: _get(master_admin, f"{base}/localization/{locale}")
            for locale in _get(master_admin, f"{base}/localization")
        },
        "users": {u: _user_snapshot(master_admin, base, u, client_ids) for u in users},
    }


def _without(rep: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in rep.items() if k not in keys}


def _by_name(items: Iterable[dict[str, Any]], key: str = "name") -> dict[str, Any]:
    return {item[key]: _without(item, key, "id") for item in items}


def _profile_snapshot(profile: dict[str, Any]) -> dict[str, Any]:
    attributes = profile.get("attributes", [])
    groups = profile.get("groups", [])
    return {
        **_without(profile, "attributes", "groups"),
        "attributes": _by_name(attributes),
        "attributeOrder": ", ".join(a["name"] for a in attributes),
        "groups": _by_name(groups),
        "groupOrder": ", ".join(g["name"] for g in groups),
    }


def _flows_snapshot(admin: KeycloakAdmin, base: str) -> dict[str, Any]:
    flows: dict[str, Any] = {}
    for flow in _get(admin, f"{base}/authentication/flows"):
        executions = _get(admin, f"{base}/authentication/flows/{quote(flow['alias'])}/executions")
        flows[flow["alias"]] = {
            "description": flow.get("description", ""),
            "providerId": flow["providerId"],
            "builtIn": flow["builtIn"],
            **_execution_tree(admin, base, executions, 0, len(executions), 0),
        }
    return flows


def _execution_tree(
    admin: KeycloakAdmin,
    base: str,
    executions: list[dict[str, Any]],
    start: int,
    end: int,
    level: int,
) -> dict[str, Any]:
    """The executions at `level` in executions[start:end] (Keycloak lists a flow depth
    first, each with its level), each with its sub-flow's executions nested."""
    steps: dict[str, Any] = {}
    positions = [i for i in range(start, end) if executions[i]["level"] == level]
    for n, i in enumerate(positions):
        execution = executions[i]
        child_end = positions[n + 1] if n + 1 < len(positions) else end
        if execution.get("authenticationFlow"):
            sub_flow = _get(admin, f"{base}/authentication/flows/{execution['flowId']}")
            key = execution["displayName"]
            step: dict[str, Any] = {
                "requirement": execution["requirement"],
                "subFlow": {
                    "alias": sub_flow["alias"],
                    "description": sub_flow.get("description", ""),
                    "providerId": sub_flow["providerId"],
                },
                **_execution_tree(admin, base, executions, i + 1, child_end, level + 1),
            }
        else:
            key = execution["providerId"]
            step = {"requirement": execution["requirement"]}
        if "authenticationConfig" in execution:
            config = _get(
                admin, f"{base}/authentication/config/{execution['authenticationConfig']}"
            )
            step["config"] = {"alias": config.get("alias"), **config.get("config", {})}
        while key in steps:  # the same authenticator twice in one flow
            key += "'"
        steps[key] = step
    return {"order": " → ".join(steps), "executions": steps}


def _required_actions_snapshot(admin: KeycloakAdmin, base: str) -> dict[str, Any]:
    actions = _get(admin, f"{base}/authentication/required-actions")
    return {
        "order": " → ".join(a["alias"] for a in actions),
        "actions": {a["alias"]: _without(a, "alias", "priority") for a in actions},
    }


def _client_snapshot(
    admin: KeycloakAdmin, base: str, client: dict[str, Any], client_ids: dict[str, str]
) -> dict[str, Any]:
    # The secret and when it was made are credentials, not settings; "access" is what
    # the calling admin may do with the client.
    rep = _without(client, "id", "clientId", "secret", "access", "protocolMappers")
    rep["attributes"] = _without(rep.get("attributes", {}), "client.secret.creation.time")
    rep["protocolMappers"] = _by_name(client.get("protocolMappers", []))
    if client.get("serviceAccountsEnabled"):
        account = _get(admin, f"{base}/clients/{client['id']}/service-account-user")
        rep["serviceAccountRoles"] = _role_mappings(admin, base, account["id"], client_ids)
    return rep


def _client_scopes_snapshot(admin: KeycloakAdmin, base: str) -> dict[str, Any]:
    return {
        "scopes": {
            s["name"]: {
                **_without(s, "id", "name", "protocolMappers"),
                "protocolMappers": _by_name(s.get("protocolMappers", [])),
            }
            for s in _get(admin, f"{base}/client-scopes")
        },
        "realmDefault": [s["name"] for s in _get(admin, f"{base}/default-default-client-scopes")],
        "realmOptional": [s["name"] for s in _get(admin, f"{base}/default-optional-client-scopes")],
    }


def _role_name(role: dict[str, Any], client_ids: dict[str, str]) -> str:
    if role.get("clientRole"):
        return f"{client_ids.get(role['containerId'], role['containerId'])}/{role['name']}"
    return role["name"]


def _role_snapshot(
    admin: KeycloakAdmin, base: str, role: dict[str, Any], client_ids: dict[str, str]
) -> dict[str, Any]:
    rep = {
        "description": role.get("description", ""),
        "composite": role.get("composite", False),
        "attributes": role.get("attributes", {}),
    }
    if role.get("composite"):
        composites = _get(admin, f"{base}/roles-by-id/{role['id']}/composites")
        rep["composites"] = [_role_name(r, client_ids) for r in composites]
    return rep


def _role_mappings(
    admin: KeycloakAdmin, base: str, user_id: str, client_ids: dict[str, str]
) -> dict[str, Any]:
    mappings = _get(admin, f"{base}/users/{user_id}/role-mappings")
    return {
        "realm": [r["name"] for r in mappings.get("realmMappings", [])],
        "clients": {
            client: [r["name"] for r in m.get("mappings", [])]
            for client, m in mappings.get("clientMappings", {}).items()
        },
    }


def _idps_snapshot(admin: KeycloakAdmin, base: str) -> dict[str, Any]:
    providers = {}
    for idp in _get(admin, f"{base}/identity-provider/instances"):
        alias = idp["alias"]
        mappers = _get(admin, f"{base}/identity-provider/instances/{quote(alias)}/mappers")
        providers[alias] = {
            **_without(idp, "alias", "internalId"),
            "mappers": _by_name(_without(m, "identityProviderAlias") for m in mappers),
        }
    return providers


def _components_snapshot(admin: KeycloakAdmin, base: str) -> dict[str, Any]:
    """Keys, user federation, client-registration policies, … by type and name (the same
    name can come twice with another subType, e.g. anonymous and authenticated)."""
    components = _get(admin, f"{base}/components")
    names = {c["id"]: c.get("name") or c["providerId"] for c in components}
    snapshot: dict[str, dict[str, Any]] = {}
    for component in components:
        if component["providerType"] == "org.keycloak.userprofile.UserProfileProvider":
            continue  # the user profile, which userProfile shows attribute by attribute
        key = names[component["id"]]
        key += f" [{component['subType']}]" if "subType" in component else ""
        of_type = snapshot.setdefault(component["providerType"], {})
        while key in of_type:
            key += "'"
        of_type[key] = {
            "providerId": component["providerId"],
            # A sub-component's parent (an LDAP mapper's provider) by name; the realm's own
            # id is no setting.
            "parent": names.get(component.get("parentId", ""), ""),
            "config": component.get("config", {}),
        }
    return snapshot


def _user_snapshot(
    admin: KeycloakAdmin, base: str, username: str, client_ids: dict[str, str]
) -> dict[str, Any] | None:
    found = _get(admin, f"{base}/users", username=username, exact="true")
    if not found:
        return None
    user_id = found[0]["id"]
    user = _get(admin, f"{base}/users/{user_id}")
    credentials = _get(admin, f"{base}/users/{user_id}/credentials")
    return {
        **{
            k: user.get(k)
            for k in ("username", "enabled", "emailVerified", "email", "firstName", "lastName")
        },
        "attributes": user.get("attributes", {}),
        "requiredActions": user.get("requiredActions", []),
        "credentialTypes": [c["type"] for c in credentials],
        "roles": _role_mappings(admin, base, user_id, client_ids),
        "groups": [g["path"] for g in _get(admin, f"{base}/users/{user_id}/groups")],
        "federatedIdentities": {
            f["identityProvider"]: _without(f, "identityProvider")
            for f in _get(admin, f"{base}/users/{user_id}/federated-identity")
        },
    }


# --- diff -------------------------------------------------------------------------------

_PLAIN = (str, int, float, bool, type(None))
_IDENTIFIER = re.compile(r"[A-Za-z_][\w-]*")


def snapshot_diff(before: Any, after: Any, path: str = "") -> list[str]:
    """Every place where `after` differs from `before`, one readable line each, e.g.
    `realm.failureFactor: 3 → 5`; empty when they are equal."""
    lines: list[str] = []
    _diff(path, before, after, lines)
    return lines


def _join(path: str, key: object) -> str:
    text = str(key)
    if _IDENTIFIER.fullmatch(text):
        return f"{path}.{text}" if path else text
    return f"{path}[{json.dumps(text, ensure_ascii=False)}]"


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 160 else text[:157] + "..."


def _diff(path: str, before: Any, after: Any, lines: list[str]) -> None:
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(before.keys() | after.keys(), key=str):
            where = _join(path, key)
            if key not in after:
                lines.append(f"{where}: removed (was {_show(before[key])})")
            elif key not in before:
                lines.append(f"{where}: added {_show(after[key])}")
            else:
                _diff(where, before[key], after[key], lines)
    elif isinstance(before, list) and isinstance(after, list):
        if all(isinstance(v, _PLAIN) for v in [*before, *after]):
            gone = [v for v in before if v not in after]
            new = [v for v in after if v not in before]
            if gone or new:
                change = ", ".join(
                    [*(f"removed {_show(v)}" for v in gone), *(f"added {_show(v)}" for v in new)]
                )
                lines.append(f"{path}: {change}")
        else:
            for i in range(max(len(before), len(after))):
                where = f"{path}[{i}]"
                if i >= len(after):
                    lines.append(f"{where}: removed (was {_show(before[i])})")
                elif i >= len(before):
                    lines.append(f"{where}: added {_show(after[i])}")
                else:
                    _diff(where, before[i], after[i], lines)
    elif before != after or type(before) is not type(after):
        lines.append(f"{path}: {_show(before)} → {_show(after)}")


# --- signing in -------------------------------------------------------------------------


@dataclass
class PageSeen:
    realm: str  # whose login page it was (the partner's, during brokering)
    kind: str  # username-password, username, password, otp, review-profile, other:<form id>
    url: str


@dataclass
class SignInResult:
    ok: bool
    tokens: dict[str, Any] | None = None
    steps: list[PageSeen] = field(default_factory=list)
    location: str = ""  # the last redirect: the client's callback, or where it stopped
    error: str = ""  # why it stopped (Keycloak's message on the page, if it had one)
    page: str = ""  # the last page's HTML when it stopped on a page
    session: requests.Session | None = None  # its cookies, to go on from `location`

    @property
    def pages(self) -> list[str]:
        """The kinds of the forms shown, in order, e.g. ["username-password", "otp"]."""
        return [step.kind for step in self.steps]

    @property
    def asked_for_otp(self) -> bool:
        return "otp" in self.pages


# TOTP codes this process has sent, per realm and secret. Keycloak refuses a code that was
# used once (otpPolicyCodeReusable false): it remembers the code itself, per credential,
# for period * (2 * look-around + 1) seconds, so a code is remembered here, not a period.
_USED_CODES: set[tuple[str, str, str]] = set()


def _fresh_totp(realm: str, secret: str, period: int = 30) -> str:
    """A code for `secret` that Keycloak still accepts when it arrives after a rollover.

    Keycloak checks against the previous, current and next period (look-around window 1,
    on its own clock, the same as ours). Only the current and the next period's codes are
    used: the current one stays accepted until the end of the next period, the next one
    until the end of the period after that, so either survives a rollover between here
    and the POST. The previous period's code is refused as soon as the period rolls
    over, so it is never handed out. With both codes of this moment sent already, this
    raises rather than waiting: two sign-ins of one account per 30-second period.
    """
    now = int(time.time() // period)
    for counter in (now, now + 1):
        code = totp(secret, at=counter * period + period / 2, period=period)
        if (realm, secret, code) not in _USED_CODES:
            _USED_CODES.add((realm, secret, code))
            return code
    raise RuntimeError(
        f"the current and the next TOTP code for realm {realm!r} were both sent by earlier "
        "sign-ins of this run, and Keycloak refuses a code twice (the previous period's "
        "code is never used: it may expire before the form is posted); sign this account "
        "in at most twice within one 30-second period"
    )


def sign_in_with_password_and_otp(
    server_url: str,
    realm: str,
    username: str,
    password: str,
    totp_secret: str | None,
    *,
    client_id: str = PORTAL_CLIENT,
    redirect_uri: str = PORTAL_CALLBACK,
) -> SignInResult:
    """Authorization code with PKCE at `realm`, answering its login pages: the combined
    username and password form, or a username page then a password page, then the OTP."""

    def answer(kind: str, _realm: str) -> dict[str, str] | None:
        if kind == "username-password":
            return {"username": username, "password": password}
        if kind == "username":
            return {"username": username}
        if kind == "password":
            return {"password": password}
        if kind == "otp" and totp_secret is not None:
            return {"otp": _fresh_totp(realm, totp_secret)}
        return None

    return _sign_in(server_url, realm, client_id, redirect_uri, {}, answer)


def sign_in_through_partner(
    server_url: str,
    realm: str,
    partner_username: str,
    partner_password: str,
    *,
    client_id: str = PORTAL_CLIENT,
    redirect_uri: str = PORTAL_CALLBACK,
    idp_alias: str = PARTNER_IDP,
) -> SignInResult:
    """Sign in to `realm` through its identity provider `idp_alias` (kc_idp_hint): the
    partner's login form, then back, accepting the review-profile page as filled in."""

    def answer(kind: str, page_realm: str) -> dict[str, str] | None:
        if page_realm == realm:
            # Only the broker's own pages are expected in the university realm.
            return {} if kind == "review-profile" else None
        if kind == "username-password":
            return {"username": partner_username, "password": partner_password}
        if kind == "username":
            return {"username": partner_username}
        if kind == "password":
            return {"password": partner_password}
        return None

    return _sign_in(server_url, realm, client_id, redirect_uri, {"kc_idp_hint": idp_alias}, answer)


Answer = Callable[[str, str], "dict[str, str] | None"]
_MAX_STEPS = 20


def _sign_in(
    server_url: str,
    realm: str,
    client_id: str,
    redirect_uri: str,
    extra: dict[str, str],
    answer: Answer,
) -> SignInResult:
    server_url = server_url.rstrip("/")
    session = requests.Session()
    params, verifier = authorization_request(client_id, redirect_uri)
    endpoints = f"{server_url}/realms/{realm}/protocol/openid-connect"
    response = _send(session, "GET", f"{endpoints}/auth", params={**params, **extra})
    result = SignInResult(ok=False, session=session)
    for _ in range(_MAX_STEPS):
        if response.is_redirect:
            location = response.headers["Location"]
            result.location = location
            if location.startswith(redirect_uri):
                return _exchange_code(result, endpoints, client_id, redirect_uri, verifier)
            if not location.startswith(f"{server_url}/"):
                result.error = "sent outside Keycloak"
                return result
            response = _send(session, "GET", location)
            continue
        result.page = response.text
        form, kind = _login_form(response.text)
        page_realm = _realm_of(response.url, server_url)
        previous = result.steps[-1] if result.steps else None
        result.steps.append(PageSeen(page_realm, kind, response.url))
        if previous and (previous.realm, previous.kind) == (page_realm, kind):
            result.error = _page_message(response.text) or f"{kind} page shown again"
            return result
        values = answer(kind, page_realm) if form else None
        if form is None or values is None:
            result.error = _page_message(response.text) or f"unexpected page: {kind}"
            return result
        response = _send(session, "POST", form.action, data={**form.values, **values})
    result.error = f"gave up after {_MAX_STEPS} steps"
    return result


def _send(session: requests.Session, method: str, url: str, **kwargs: Any) -> requests.Response:
    response = session.request(method, url, allow_redirects=False, timeout=30, **kwargs)
    # Keycloak marks its login cookies Secure even on plain-HTTP loopback; browsers treat
    # 127.0.0.1 as a secure context and send them, requests does not unless told.
    for cookie in session.cookies:
        cookie.secure = False
    return response


def _exchange_code(
    result: SignInResult, endpoints: str, client_id: str, redirect_uri: str, verifier: str
) -> SignInResult:
    query = parse_qs(urlparse(result.location).query)
    if "code" not in query:
        result.error = query.get("error_description", query.get("error", ["no code"]))[0]
        return result
    assert result.session is not None
    tokens = result.session.post(
        f"{endpoints}/token",
        data={
            "grant_type": "authorization_code",
            "client_id": client_id,
            "code": query["code"][0],
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        },
        timeout=30,
    )
    if tokens.status_code != 200:
        result.error = f"token endpoint: {tokens.status_code} {tokens.text[:300]}"
        return result
    result.ok, result.tokens = True, tokens.json()
    return result


def _realm_of(url: str, server_url: str) -> str:
    match = re.match(re.escape(server_url) + r"/realms/([^/?#]+)", url)
    return match.group(1) if match else ""


@dataclass
class _Form:
    id: str
    action: str
    values: dict[str, str]  # what the browser would send untouched (hidden, prefilled)
    visible: list[str]  # the names of the fields a person fills in

    @property
    def kind(self) -> str:
        fields = set(self.visible)
        if "update-profile" in self.id or "review-profile" in self.id:
            return "review-profile"
        if "otp" in fields:
            return "otp"
        if {"username", "password"} <= fields:
            return "username-password"
        if "username" in fields:
            return "username"
        if "password" in fields:
            return "password"
        return f"other:{self.id or 'form'}"


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[_Form] = []
        self._current: _Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._current = _Form(a.get("id", ""), unescape(a.get("action", "")), {}, [])
            self.forms.append(self._current)
        elif tag == "input" and self._current is not None and a.get("name"):
            kind = a.get("type", "text").lower()
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            if kind not in ("submit", "button", "reset", "image"):
                self._current.values.setdefault(a["name"], a.get("value", ""))
            if kind not in ("hidden", "submit", "button", "reset", "image", "checkbox", "radio"):
                self._current.visible.append(a["name"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


_FIELDS = {"username", "password", "otp", "email", "firstName", "lastName"}


def _login_form(page: str) -> tuple[_Form | None, str]:
    """The page's main form (the one asking for credentials or profile fields; a page may
    also carry e.g. a "try another way" form) and what kind of page it is."""
    parser = _Forms()
    parser.feed(page)
    for form in parser.forms:
        if _FIELDS & set(form.visible) and form.action:
            return form, form.kind
    return None, f"other:{parser.forms[0].id or 'form'}" if parser.forms else "other:no form"


_MESSAGES = (
    re.compile(r'id="input-error[^"]*"[^>]*>(.*?)</', re.S),
    re.compile(r'class="[^"]*(?:kc-feedback-text|pf-v5-c-alert__title)[^"]*"[^>]*>(.*?)</', re.S),
    re.compile(r'id="kc-error-message"[^>]*>\s*<p[^>]*>(.*?)</', re.S),
    re.compile(r'id="kc-page-title"[^>]*>(.*?)</', re.S),
)


def _page_message(page: str) -> str:
    for pattern in _MESSAGES:
        match = pattern.search(page)
        if match:
            text = " ".join(re.sub(r"<[^>]+>", " ", unescape(match.group(1))).split())
            if text:
                return text
    return ""
