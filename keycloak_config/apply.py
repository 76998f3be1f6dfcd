"""Apply the realm as code to a Keycloak server, idempotently.

    python -m keycloak_config.apply [--check] [--fast-hash]

Reads the JSON files beside this module, fills in `{{NAME}}` placeholders from the
environment, compares each part with what the server holds and writes only what
differs. A second run reports no change. `--check` writes nothing and exits 1 when the
server has drifted from the code. `--fast-hash` adds a cheap password hash to the
password policy: for test realms only.

This uses a privileged credential (a master-realm admin); the running service never
does. Environment:

    UMPASS_KEYCLOAK_URL          Keycloak base URL (default http://127.0.0.1:18080)
    KEYCLOAK_ADMIN_USER          master-realm admin user name
    KEYCLOAK_ADMIN_PASSWORD      its password
    UMPASS_REALM                 realm name (default umpass)
    UMPASS_KC_CLIENT_SECRET      secret to give the service's client
    UMPASS_KC_PROVISIONER_SECRET secret to give the provisioning client
    UMPASS_DEMO_BASE_URL         where the demo downstream app lives (default: UMPASS_BASE_URL)
    UMPASS_BASE_URL              where students reach the service (its OIDC issuer is <this>/oidc)
    UMPASS_BACKCHANNEL_URL       where Keycloak reaches the service (default: UMPASS_BASE_URL)
    UMPASS_BROKER_CLIENT_ID      the realm's client id at the service (default keycloak-broker)
    UMPASS_BROKER_CLIENT_SECRET  its secret (the service holds the same value)
    UMPASS_HELPDESK_CLIENT_SECRET  secret of the help-desk console's client
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keycloak import KeycloakAdmin, KeycloakOpenIDConnection
from keycloak.exceptions import (
    KeycloakAuthenticationError,
    KeycloakConnectionError,
    KeycloakError,
    KeycloakGetError,
    KeycloakPostError,
)

from keycloak_config.flows import FlowBuilder, FlowError, desired_flows

CONFIG_DIR = Path(__file__).resolve().parent
FAST_HASH = "hashAlgorithm(pbkdf2-sha256) and hashIterations(1)"
BLOCKLIST_FILE = "umpass-common-passwords.txt"
_PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")


class ApplyError(Exception):
    """The configuration could not be applied; the message says what to fix."""


@dataclass
class ApplyOptions:
    url: str
    admin_user: str
    admin_password: str = field(repr=False)
    realm: str = "umpass"
    variables: dict[str, str] = field(default_factory=dict, repr=False)
    fast_hash: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, fast_hash: bool = False) -> ApplyOptions:
        missing = [
            name
            for name in (
                "KEYCLOAK_ADMIN_USER",
                "KEYCLOAK_ADMIN_PASSWORD",
                "UMPASS_KC_CLIENT_SECRET",
                "UMPASS_KC_PROVISIONER_SECRET",
                "UMPASS_BROKER_CLIENT_SECRET",
                "UMPASS_HELPDESK_CLIENT_SECRET",
            )
            if not env.get(name)
        ]
        if missing:
            raise ApplyError(f"{', '.join(missing)} not set: see .env.example")
        realm = env.get("UMPASS_REALM", "umpass") or "umpass"
        base_url = env.get("UMPASS_BASE_URL", "http://127.0.0.1:5000").rstrip("/")
        backchannel = (env.get("UMPASS_BACKCHANNEL_URL", "") or base_url).rstrip("/")
        return cls(
            url=env.get("UMPASS_KEYCLOAK_URL", "http://127.0.0.1:18080").rstrip("/"),
            admin_user=env["KEYCLOAK_ADMIN_USER"],
            admin_password=env["KEYCLOAK_ADMIN_PASSWORD"],
            realm=realm,
            variables={
                "REALM": realm,
                "ACTIVATION_CLIENT_SECRET": env["UMPASS_KC_CLIENT_SECRET"],
                "PROVISIONER_CLIENT_SECRET": env["UMPASS_KC_PROVISIONER_SECRET"],
                "DEMO_BASE_URL": env.get("UMPASS_DEMO_BASE_URL", base_url + "/demo").rstrip("/"),
                "ACTIVATION_ISSUER": base_url + "/oidc",
                "ACTIVATION_BACKCHANNEL": backchannel + "/oidc",
                "BROKER_CLIENT_ID": env.get("UMPASS_BROKER_CLIENT_ID", "") or "keycloak-broker",
                "BROKER_CLIENT_SECRET": env["UMPASS_BROKER_CLIENT_SECRET"],
                "HELPDESK_CLIENT_SECRET": env["UMPASS_HELPDESK_CLIENT_SECRET"],
                "SERVICE_BASE_URL": base_url,
            },
            fast_hash=fast_hash,
        )


def _load(name: str, variables: Mapping[str, str]) -> Any:
    """Read one JSON file, filling `{{NAME}}` placeholders (Keycloak owns `${...}`)."""
    text = (CONFIG_DIR / name).read_text(encoding="utf-8")

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in variables:
            raise ApplyError(f"keycloak_config/{name} uses {{{{{key}}}}}, which has no value")
        # Substitute inside JSON strings safely: json.dumps escapes quotes and backslashes.
        return json.dumps(variables[key])[1:-1]

    return json.loads(_PLACEHOLDER.sub(fill, text))


def _covers(current: Any, desired: Any) -> bool:
    """True when `current` already holds everything `desired` states.

    Keycloak adds defaults and ids to what it returns, so dicts compare as a subset.
    Lists of plain values are sets to Keycloak (locales, redirect URIs) and come back
    in any order; lists of objects (user-profile attributes) keep their order.
    """
    if isinstance(desired, dict):
        return isinstance(current, dict) and all(
            k in current and _covers(current[k], v) for k, v in desired.items()
        )
    if isinstance(desired, list) and all(isinstance(d, str | int | bool) for d in desired):
        return isinstance(current, list) and sorted(map(str, current)) == sorted(map(str, desired))
    if isinstance(desired, list):
        return (
            isinstance(current, list)
            and len(current) == len(desired)
            and all(_covers(c, d) for c, d in zip(current, desired, strict=True))
        )
    return current == desired


def _policy_rules(policy: str | None) -> list[str]:
    return sorted(p.strip() for p in (policy or "").split(" and ") if p.strip())


class RealmApplier:
    """Brings one realm in line with keycloak_config/; each step returns what it changed."""

    def __init__(self, options: ApplyOptions, *, dry_run: bool = False) -> None:
        self.options = options
        self.dry_run = dry_run
        self.changes: list[str] = []
        connection = KeycloakOpenIDConnection(
            server_url=options.url + "/",  # keeps a path prefix such as /auth
            username=options.admin_user,
            password=options.admin_password,
            realm_name="master",
            user_realm_name="master",
            client_id="admin-cli",
            timeout=30,
        )
        self.admin = KeycloakAdmin(connection=connection)

    def _change(self, what: str) -> bool:
        self.changes.append(what)
        return not self.dry_run

    def desired_realm(self) -> dict[str, Any]:
        realm = _load("realm.json", self.options.variables)
        if self.options.fast_hash:
            realm["passwordPolicy"] = f"{realm['passwordPolicy']} and {FAST_HASH}"
        return realm

    def apply(self) -> list[str]:
        self.ensure_realm()
        if self.dry_run and self.changes:
            return self.changes  # nothing further can be compared in a missing realm
        self.admin.change_current_realm(self.options.realm)
        self.apply_realm_settings()
        self.apply_user_profile()
        self.apply_realm_roles()
        self.apply_clients()
        self.apply_client_role_scopes()
        self.apply_flows_and_identity_provider()
        self.apply_service_account_roles()
        return self.changes

    def ensure_realm(self) -> None:
        names = {r["realm"] for r in self.admin.get_realms()}
        if self.options.realm not in names and self._change(f"create realm {self.options.realm}"):
            self.admin.create_realm(
                {"realm": self.options.realm, "enabled": True}, skip_exists=True
            )

    def apply_realm_settings(self) -> None:
        desired = self.desired_realm()
        current = self.admin.get_realm(self.options.realm)
        differing = {
            k: v
            for k, v in desired.items()
            if k != "passwordPolicy" and not _covers(current.get(k), v)
        }
        if _policy_rules(current.get("passwordPolicy")) != _policy_rules(desired["passwordPolicy"]):
            differing["passwordPolicy"] = desired["passwordPolicy"]
        if differing and self._change("realm settings: " + ", ".join(sorted(differing))):
            try:
                self.admin.update_realm(self.options.realm, differing)
            except KeycloakError as exc:
                body = (exc.response_body or b"").decode("utf-8", "replace")
                if "blacklist" in body.lower():
                    raise ApplyError(
                        f"Keycloak cannot find the password blocklist: copy "
                        f"keycloak_config/{BLOCKLIST_FILE} into data/password-blacklists/ "
                        "of the Keycloak installation (scripts/keycloak start does this)"
                    ) from exc
                raise

    def apply_user_profile(self) -> None:
        desired = _load("user-profile.json", self.options.variables)
        path = f"admin/realms/{self.options.realm}/users/profile"
        response = self.admin.connection.raw_get(path)
        try:
            current = response.json()
        except ValueError:
            raise ApplyError(
                f"Keycloak answered the user profile with HTTP {response.status_code}, not JSON"
            ) from None
        # Keys only Keycloak adds (unmanagedAttributePolicy) must not be there unasked.
        extra_keys = set(current) - set(desired) - {"groups", "attributes"}
        if (extra_keys or not _covers(current, desired)) and self._change("user profile"):
            response = self.admin.connection.raw_put(path, data=json.dumps(desired))
            if response.status_code >= 300:
                raise ApplyError(f"Keycloak refused the user profile: {response.text[:300]}")

    def apply_realm_roles(self) -> None:
        """The roles staff need in the help-desk console; never removes other roles."""
        wanted = _load("realm-roles.json", self.options.variables)
        existing = {r["name"]: r for r in self.admin.get_realm_roles(brief_representation=False)}
        for role in wanted:
            current = existing.get(role["name"])
            if current is None:
                if self._change(f"create realm role {role['name']}"):
                    self.admin.create_realm_role(role, skip_exists=True)
            elif current.get("description") != role["description"] and self._change(
                f"realm role {role['name']}"
            ):
                self.admin.update_realm_role(role["name"], {**current, **role})

    def apply_client_role_scopes(self) -> None:
        """The realm roles a client without full scope may put in its tokens: exactly
        these (the help-desk console sees its two roles, not every role of a staff member)."""
        wanted_by_client: dict[str, list[str]] = _load(
            "client-role-scopes.json", self.options.variables
        )
        clients = {c["clientId"]: c for c in self.admin.get_clients()}
        for client_id, wanted in wanted_by_client.items():
            if client_id not in clients:  # created in a dry run only
                continue
            client_uuid = clients[client_id]["id"]
            path = f"admin/realms/{self.options.realm}/clients/{client_uuid}/scope-mappings/realm"
            held = {r["name"]: r for r in self.admin.connection.raw_get(path).json()}
            roles = {r: self.admin.get_realm_role(r) for r in wanted if r not in held}
            extra = [r for name, r in held.items() if name not in wanted]
            if roles and self._change(f"scope {client_id} to roles {', '.join(sorted(roles))}"):
                self.admin.connection.raw_post(path, data=json.dumps(list(roles.values())))
            if extra and self._change(
                f"unscope {client_id} from {', '.join(r['name'] for r in extra)}"
            ):
                self.admin.connection.raw_delete(path, data=json.dumps(extra))

    def apply_clients(self) -> None:
        existing = {c["clientId"]: c for c in self.admin.get_clients()}
        for path in sorted((CONFIG_DIR / "clients").glob("*.json")):
            desired = _load(f"clients/{path.name}", self.options.variables)
            client_id = desired["clientId"]
            current = existing.get(client_id)
            if current is None:
                if self._change(f"create client {client_id}"):
                    self.admin.create_client(desired, skip_exists=True)
                continue
            if not _covers(current, desired) and self._change(f"client {client_id}"):
                self.admin.update_client(current["id"], desired)

    def apply_flows_and_identity_provider(self) -> None:
        """Flows first (new copies beside the old), then bindings and the identity
        provider point at them, and only then are superseded copies deleted."""
        builder = FlowBuilder(self.admin, self.options.realm)
        realm = self.admin.get_realm(self.options.realm)
        resolved: dict[str, str] = {}
        superseded: list[str] = []
        for desired in desired_flows():
            name = desired["alias"]
            existing = builder.candidates(name)
            keep = next((a for a in existing if builder.matches(a, desired)), None)
            if keep is None:
                keep = builder.build(desired) if self._change(f"build flow {name}") else name
            resolved[name] = keep
            superseded += [a for a in existing if a != keep]
            bind = desired.get("bind")
            if bind and realm.get(bind) != keep and self._change(f"bind {bind} to {name}"):
                self.admin.update_realm(self.options.realm, {bind: keep})
        self.apply_identity_provider(resolved)
        for alias in superseded:
            if self._change(f"delete superseded flow {alias}"):
                builder.delete(alias)

    def apply_identity_provider(self, flows: Mapping[str, str]) -> None:
        desired = _load("identity-provider.json", self.options.variables)
        wanted_flow = desired["firstBrokerLoginFlowAlias"]
        desired["firstBrokerLoginFlowAlias"] = flows.get(wanted_flow, wanted_flow)
        path = f"admin/realms/{self.options.realm}/identity-provider/instances"
        response = self.admin.connection.raw_get(f"{path}/{desired['alias']}")
        if response.status_code == 404:
            if self._change(f"create identity provider {desired['alias']}"):
                self._write(self.admin.connection.raw_post(path, data=json.dumps(desired)))
            return
        current = response.json()
        # Keycloak never shows a stored secret back (it answers "**********"), so a
        # changed secret alone is not seen as drift: rotate it by changing another key
        # too, or in the admin console.
        comparable = {**desired, "config": dict(desired["config"])}
        comparable["config"].pop("clientSecret", None)
        if not _covers(current, comparable) and self._change(
            f"identity provider {desired['alias']}"
        ):
            url = f"{path}/{desired['alias']}"
            self._write(self.admin.connection.raw_put(url, data=json.dumps(desired)))

    @staticmethod
    def _write(response: Any) -> None:
        if response.status_code >= 300:
            raise ApplyError(f"Keycloak refused the identity provider: {response.text[:300]}")

    def apply_service_account_roles(self) -> None:
        wanted_by_client: dict[str, list[str]] = _load(
            "service-accounts.json", self.options.variables
        )
        clients = {c["clientId"]: c for c in self.admin.get_clients()}
        rm = clients["realm-management"]
        available = {r["name"]: r for r in self.admin.get_client_roles(rm["id"])}
        unknown = sorted({n for names in wanted_by_client.values() for n in names} - set(available))
        if unknown:
            raise ApplyError(
                f"keycloak_config/service-accounts.json names roles realm-management does not "
                f"have: {', '.join(unknown)}"
            )
        default_role = f"default-roles-{self.options.realm}"
        for client_id, wanted in wanted_by_client.items():
            if client_id not in clients:  # created in a dry run only
                self._change(f"roles of {client_id}: {', '.join(sorted(wanted))}")
                continue
            user = self.admin.get_client_service_account_user(clients[client_id]["id"])
            # Roles can also come through groups or realm roles: a service account
            # holds none of those beyond the realm's default role.
            for group in self.admin.get_user_groups(user["id"]):
                if self._change(f"remove {client_id} from group {group['name']}"):
                    self.admin.group_user_remove(user["id"], group["id"])
            extra_realm = [
                r
                for r in self.admin.get_realm_roles_of_user(user["id"])
                if r["name"] != default_role
            ]
            names = ", ".join(sorted(r["name"] for r in extra_realm))
            if extra_realm and self._change(f"revoke {client_id} realm roles: {names}"):
                self.admin.delete_realm_roles_of_user(user["id"], extra_realm)
            held = {r["name"] for r in self.admin.get_client_roles_of_user(user["id"], rm["id"])}
            to_add = sorted(set(wanted) - held)
            to_remove = sorted(held - set(wanted))
            if to_add and self._change(f"grant {client_id}: {', '.join(to_add)}"):
                self.admin.assign_client_role(user["id"], rm["id"], [available[n] for n in to_add])
            if to_remove and self._change(f"revoke {client_id}: {', '.join(to_remove)}"):
                self.admin.delete_client_roles_of_user(
                    user["id"], rm["id"], [available[n] for n in to_remove]
                )


def apply_realm(options: ApplyOptions, *, dry_run: bool = False) -> list[str]:
    """Apply (or with dry_run, only list) the changes; errors become `ApplyError`."""
    try:
        return RealmApplier(options, dry_run=dry_run).apply()
    except KeycloakConnectionError as exc:
        raise ApplyError(
            f"cannot reach Keycloak at {options.url}: is it running? (scripts/keycloak start)"
        ) from exc
    except (KeycloakAuthenticationError, KeycloakGetError, KeycloakPostError) as exc:
        # A refused password grant is HTTP 400 invalid_grant, not 401.
        if not isinstance(exc, KeycloakAuthenticationError) and b"invalid_grant" not in (
            exc.response_body or b""
        ):
            raise ApplyError(_refusal(exc)) from exc
        raise ApplyError(
            f"Keycloak at {options.url} refused the admin credential: "
            "check KEYCLOAK_ADMIN_USER and KEYCLOAK_ADMIN_PASSWORD"
        ) from exc
    except KeycloakError as exc:
        raise ApplyError(_refusal(exc)) from exc
    except FlowError as exc:
        raise ApplyError(str(exc)) from exc


def _refusal(exc: KeycloakError) -> str:
    body = (exc.response_body or b"").decode("utf-8", "replace")[:300]
    return f"Keycloak refused a change (HTTP {exc.response_code}): {body}"


def _apply_ldap_federation(options: ApplyOptions) -> list[str]:
    """The realm profile for universities whose accounts live in a directory."""
    from keycloak_config.ldap_federation import LdapFederationSettings, apply_ldap_federation

    missing = [
        n
        for n in ("UMPASS_LDAP_URL", "UMPASS_LDAP_BIND_DN", "UMPASS_LDAP_BIND_PASSWORD")
        if not os.environ.get(n)
    ]
    users_dn = os.environ.get("UMPASS_LDAP_USERS_DN") or os.environ.get("UMPASS_LDAP_BASE_DN")
    if missing or not users_dn:
        raise ApplyError(
            f"{', '.join(missing) or 'UMPASS_LDAP_USERS_DN'} not set: --ldap-federation needs "
            "the directory's URL, bind DN and password, and where the accounts live"
        )
    settings = LdapFederationSettings(
        connection_url=os.environ["UMPASS_LDAP_URL"],
        bind_dn=os.environ["UMPASS_LDAP_BIND_DN"],
        bind_credential=os.environ["UMPASS_LDAP_BIND_PASSWORD"],
        users_dn=users_dn,
    )
    applier = RealmApplier(options)
    return apply_ldap_federation(applier.admin, options.realm, settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report drift, change nothing")
    parser.add_argument("--fast-hash", action="store_true", help="cheap hashing, tests only")
    parser.add_argument(
        "--ldap-federation",
        action="store_true",
        help="also federate the realm with the LDAP directory in UMPASS_LDAP_* (writable)",
    )
    args = parser.parse_args(argv)
    try:
        options = ApplyOptions.from_env(os.environ, fast_hash=args.fast_hash)
        changes = apply_realm(options, dry_run=args.check)
        if args.ldap_federation and not args.check:
            changes += _apply_ldap_federation(options)
    except ApplyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    verb = "would change" if args.check else "changed"
    if not changes:
        print(f"realm {options.realm}: up to date")
        return 0
    print(f"realm {options.realm}: {verb} {len(changes)}")
    for change in changes:
        print(f"  - {change}")
    return 1 if args.check else 0


if __name__ == "__main__":
    sys.exit(main())
