"""Takes the extension out of a realm: what it created goes, what it changed comes back.

Driven by the install record (`ownership`): bindings go back to the realm's own flows
first (so sign-in never meets a missing flow), then the identity provider, the
extension's flows, clients and roles are deleted, and each realm setting the extension
changed returns to its earlier value, unless an admin has changed it since (then it is
theirs and stays). Accounts are never deleted; the activation attributes on them stay,
with their user-profile declarations, unless `remove_data` asks to remove them.
"""

from __future__ import annotations

import json
from typing import Any

from keycloak import KeycloakAdmin
from keycloak.exceptions import KeycloakError

from keycloak_config import flow_merge
from keycloak_config.applier import (
    ATTRIBUTE_KIND,
    CLIENT_KIND,
    FLOW_KIND,
    GROUP_KIND,
    IDP_KIND,
    LOCALE_KIND,
    ROLE_KIND,
    TEXT_KIND,
    _show,
)
from keycloak_config.claim_scopes import SCOPE_KIND, remove_claim_scopes, wanted_scopes
from keycloak_config.flows import FlowBuilder, FlowError, desired_flows, is_copy_of
from keycloak_config.merge import _covers, unmerge_policy
from keycloak_config.options import CONFIG_DIR, ApplyError, ApplyOptions, load
from keycloak_config.ownership import InstallRecord
from keycloak_config.paging import every_account, every_identity_provider
from keycloak_config.plan import Change, Plan, Planner
from keycloak_config.student_permissions import (
    GROUP_KIND as STUDENTS_GROUP_KIND,
)
from keycloak_config.student_permissions import (
    PERMISSION,
    PERMISSION_KIND,
    POLICY,
    remove_student_permissions,
)
from provider.keycloak import STUDENTS_GROUP


class RealmUninstaller(Planner):
    def __init__(
        self, options: ApplyOptions, *, dry_run: bool = False, remove_data: bool = False
    ) -> None:
        super().__init__(options.realm, dry_run=dry_run)
        self.options = options
        self.realm = options.realm
        self.remove_data = remove_data
        self.admin: KeycloakAdmin = options.admin()
        self.record = InstallRecord()

    def uninstall(self) -> Plan:
        if self.realm not in {r["realm"] for r in self.admin.get_realms()}:
            self._keep(f"realm {self.realm}", "it does not exist")
            return self.plan
        self.admin.change_current_realm(self.realm)
        self.record = InstallRecord.load(self.admin, self.realm)
        if self.record.is_empty():
            self._keep(f"realm {self.realm}", "it holds no record of the extension")
            return self.plan
        self._only_what_the_config_names()
        self.restore_bindings()
        self.restore_other_providers()
        self.remove_identity_providers()
        self.remove_flows()
        remove_student_permissions(self)  # while the service account it names exists
        self.remove_clients_and_roles()
        remove_claim_scopes(self, {s["name"] for s in wanted_scopes(self.options.variables)})
        self.remove_texts()
        self.restore_realm_settings()
        self.restore_user_profile()
        self._keep("every account", "users, credentials and sessions are never touched")
        pending = self.admin.get_users({"q": "activation_state:pending", "max": 1000})
        if pending:
            self._keep(
                f"{len(pending)}{'+' * (len(pending) == 1000)} accounts still pending",
                "without the extension nothing stops one with a password from signing in: "
                "disable them, or activate them first",
            )
        if not self.dry_run:
            self._finish_record()
        return self.plan

    def restore_bindings(self) -> None:
        realm = self.admin.get_realm(self.realm)
        aliases = {f["alias"] for f in FlowBuilder(self.admin, self.realm).top_level()}
        for binding, (logical, _, builtin) in flow_merge.DERIVED.items():
            current = realm.get(binding)
            if not is_copy_of(current, logical):
                self._keep(f"{binding} {_show(current)}", "not the extension's flow")
                continue
            before = self.record.previous.get(f"binding.{binding}")
            target = before if before in aliases else builtin
            if self._write(Change("restore", f"{binding} binding", current, target)):
                self.admin.update_realm(self.realm, {binding: target})

    def remove_identity_providers(self) -> None:
        base = f"admin/realms/{self.realm}/identity-provider/instances"
        for alias in self.record.created.get(IDP_KIND, []):
            if self.admin.connection.raw_get(f"{base}/{alias}").status_code == 404:
                continue
            if self._write(
                Change("remove", f"identity provider {alias}", why="and the links to it")
            ):
                response = self.admin.connection.raw_delete(f"{base}/{alias}")
                if response.status_code >= 300:
                    raise ApplyError(
                        f"Keycloak kept identity provider {alias}: {response.text[:200]}"
                    )

    def _only_what_the_config_names(self) -> None:
        """The record lives in the realm, where anyone with manage-realm can edit it:
        only names keycloak_config/ itself defines are ever deleted."""
        variables = self.options.variables
        clients = {
            load(f"clients/{p.name}", variables)["clientId"]
            for p in (CONFIG_DIR / "clients").glob("*.json")
        }
        allowed = {
            CLIENT_KIND: clients,
            ROLE_KIND: {r["name"] for r in load("realm-roles.json", variables)},
            IDP_KIND: {load("identity-provider.json", variables)["alias"]},
            ATTRIBUTE_KIND: {a["name"] for a in load("user-profile.json", variables)["attributes"]},
            GROUP_KIND: {g["name"] for g in load("user-profile.json", variables)["groups"]},
            STUDENTS_GROUP_KIND: {STUDENTS_GROUP},
            PERMISSION_KIND: {PERMISSION, POLICY},
            SCOPE_KIND: {s["name"] for s in wanted_scopes(variables)},
            TEXT_KIND: {
                f"{locale}/{key}"
                for key, texts in load("messages.json", variables).items()
                for locale in texts
            },
        }
        flows = {logical for logical, _, _ in flow_merge.DERIVED.values()}
        flows |= {f["alias"] for f in desired_flows()}
        for kind, names in list(self.record.created.items()):
            keep = [
                n
                for n in names
                if (n in allowed[kind] if kind in allowed else kind != FLOW_KIND)
                or (kind == FLOW_KIND and (n in flows or n.startswith(flow_merge.POST_BROKER_NAME)))
            ]
            for name in sorted(set(names) - set(keep)):
                self._keep(f"{kind} {name}", "named in the install record, not by keycloak_config/")
            self.record.created[kind] = keep

    def restore_other_providers(self) -> None:
        base = f"admin/realms/{self.realm}/identity-provider/instances"
        providers = {p["alias"]: p for p in every_identity_provider(self.admin, self.realm)}
        aliases = {f["alias"] for f in FlowBuilder(self.admin, self.realm).top_level()}
        for key, before in self.record.previous.items():
            if not (key.startswith("idp.") and key.endswith(".postBrokerLoginFlowAlias")):
                continue
            alias = key.removeprefix("idp.").removesuffix(".postBrokerLoginFlowAlias")
            current = (providers.get(alias) or {}).get("postBrokerLoginFlowAlias")
            if not flow_merge.is_post_broker_copy(current):
                continue
            target, why = before or "", ""
            if before and before not in aliases:
                target, why = "", f"its earlier post-login flow {before!r} is gone"
            if self._write(
                Change(
                    "restore",
                    f"identity provider {alias}: post-login flow",
                    current,
                    _show(target),
                    why,
                )
            ):
                full = self.admin.connection.raw_get(f"{base}/{alias}").json()
                response = self.admin.connection.raw_put(
                    f"{base}/{alias}", data=json.dumps({**full, "postBrokerLoginFlowAlias": target})
                )
                if response.status_code >= 300:
                    raise ApplyError(
                        f"Keycloak refused identity provider {alias}: {response.text[:200]}"
                    )

    def remove_flows(self) -> None:
        builder = FlowBuilder(self.admin, self.realm)
        for logical in self.record.created.get(FLOW_KIND, []):
            for alias in builder.candidates(logical):
                if not self._write(Change("remove", f"flow {alias}")):
                    continue
                try:
                    builder.delete(alias)
                except FlowError as exc:  # still bound somewhere, e.g. a client's override
                    self._keep(f"flow {alias}", str(exc))

    def remove_clients_and_roles(self) -> None:
        clients = {c["clientId"]: c for c in self.admin.get_clients()}
        for client_id in self.record.created.get(CLIENT_KIND, []):
            if client_id in clients and self._write(Change("remove", f"client {client_id}")):
                self.admin.delete_client(clients[client_id]["id"])
        roles = {r["name"] for r in self.admin.get_realm_roles()}
        for role in self.record.created.get(ROLE_KIND, []):
            if role in roles and self._write(
                Change("remove", f"realm role {role}", why="and its grants to staff")
            ):
                self.admin.delete_realm_role(role)

    def remove_texts(self) -> None:
        base = f"admin/realms/{self.realm}/localization"
        for name in self.record.created.get(TEXT_KIND, []):
            locale, key = name.split("/", 1)
            if key not in self.admin.connection.raw_get(f"{base}/{locale}").json():
                continue
            if self._write(Change("remove", f"realm text {name}")):
                self.admin.connection.raw_delete(f"{base}/{locale}/{key}")
        # Keycloak keeps a locale's entry when its last text goes: drop the ones we began.
        for locale in self.record.created.get(LOCALE_KIND, []):
            if not self.dry_run and not self.admin.connection.raw_get(f"{base}/{locale}").json():
                self.admin.connection.raw_delete(f"{base}/{locale}")

    def restore_realm_settings(self) -> None:
        current = self.admin.get_realm(self.realm)
        update: dict[str, Any] = {}
        permissions_off = False  # Keycloak then keeps a client of its own
        for key, before in self.record.previous.items():
            if not key.startswith("realm."):
                continue
            name = key.removeprefix("realm.")
            now, ours = current.get(name), self.record.applied.get(key)
            if _same(name, now, before):
                continue
            if not _same(name, now, ours):
                self._keep(f"{name} {_show(now)}", "changed since the extension set it")
                continue
            permissions_off |= name == "adminPermissionsEnabled" and not before
            if self._write(Change("restore", name, _show(now), _show(before))):
                update[name] = before if before is not None else _unset(name)
        rules = {
            key.removeprefix("policy."): (*before, self.record.applied.get(key))
            for key, before in self.record.previous.items()
            if key.startswith("policy.")
        }
        policy = current.get("passwordPolicy") or ""
        restored = unmerge_policy(policy, rules)
        if restored != policy and self._write(
            Change("restore", "password policy", policy, _show(restored), "rule by rule")
        ):
            update["passwordPolicy"] = restored
        if update:
            self.admin.update_realm(self.realm, update)
        if permissions_off:
            self._keep(
                "client admin-permissions",
                "Keycloak made it when fine-grained admin permissions were switched on and "
                "refuses to delete it; the extension's permission in it is gone",
            )

    def restore_user_profile(self) -> None:
        path = f"admin/realms/{self.realm}/users/profile"
        profile = self.admin.connection.raw_get(path).json()
        attributes = profile.get("attributes", [])
        changed = False
        for key, before in list(self.record.previous.items()):
            if not key.startswith("profile."):
                continue
            name = key.removeprefix("profile.")
            at = next((i for i, a in enumerate(attributes) if a["name"] == name), None)
            if at is None or not _covers(attributes[at], self.record.applied.get(key)):
                self._keep(f"user-profile attribute {name}", "changed since the extension set it")
                continue
            if self._write(Change("restore", f"user-profile attribute {name}")):
                attributes[at] = before
                changed = True
        ours = self.record.created.get(ATTRIBUTE_KIND, [])
        groups = self.record.created.get(GROUP_KIND, [])
        if ours and not self.remove_data:
            self._keep(
                f"user-profile attributes {', '.join(ours)} and the values on accounts",
                "they hold students' data: --remove-activation-data removes them",
            )
        elif ours and self._write(
            Change(
                "remove",
                f"user-profile attributes {', '.join(ours)}",
                why="and their values on every account",
            )
        ):
            refused = self._strip_attributes(set(ours))
            if refused:
                # Declarations and the record stay, so a later run can finish the job.
                self.remove_data = False
                self._keep(
                    f"activation attributes on {len(refused)} accounts: {', '.join(refused[:5])}",
                    "Keycloak refused the update; fix them and run --uninstall again",
                )
            else:
                profile["attributes"] = [a for a in attributes if a["name"] not in ours]
                profile["groups"] = [
                    g for g in profile.get("groups", []) if g["name"] not in groups
                ]
                changed = True
        if changed:
            response = self.admin.connection.raw_put(path, data=json.dumps(profile))
            if response.status_code >= 300:
                raise ApplyError(f"Keycloak refused the user profile: {response.text[:300]}")

    def _strip_attributes(self, names: set[str]) -> list[str]:
        """Remove the activation attributes from every account holding them, while they
        are still declared (a PUT sends the whole attribute map back, minus ours).
        Returns the accounts Keycloak refused (e.g. one missing a required attribute)."""
        refused: list[str] = []
        for user in every_account(self.admin):
            attributes = user.get("attributes") or {}
            if names & set(attributes):
                kept = {k: v for k, v in attributes.items() if k not in names}
                try:
                    self.admin.update_user(user["id"], {**user, "attributes": kept})
                except KeycloakError as exc:
                    refused.append(f"{user['username']} (HTTP {exc.response_code})")
        return refused

    def _finish_record(self) -> None:
        """Forget what is undone; keep only the attributes left on accounts."""
        if self.remove_data or not self.record.created.get(ATTRIBUTE_KIND):
            InstallRecord.erase(self.admin, self.realm)
            return
        left = InstallRecord(
            created={
                kind: names
                for kind, names in self.record.created.items()
                if kind in (ATTRIBUTE_KIND, GROUP_KIND)
            }
        )
        left.save(self.admin, self.realm)


def _same(name: str, a: Any, b: Any) -> bool:
    if name == "supportedLocales":
        return sorted(a or []) == sorted(b or [])
    if a in (None, "") and b in (None, ""):
        return True
    return bool(a == b)


def _unset(name: str) -> Any:
    """What clears a setting Keycloak had no value for (JSON null would be ignored)."""
    return [] if name == "supportedLocales" else ""
