"""Adds the extension to a realm by merging, never replacing; records what it did.

Each step reads what the realm holds, works out what the extension needs on top of it
(`merge`, `flow_merge`), adds one `Change` per write (and a "keep" line for what it
leaves alone), and writes only when not planning. Before a write that changes or creates
something, the install record (`ownership`) is saved with it, so `--uninstall` can undo
exactly what the extension did.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from keycloak import KeycloakAdmin
from keycloak.exceptions import KeycloakError

from keycloak_config import flow_merge
from keycloak_config.claim_scopes import apply_claim_scopes
from keycloak_config.flows import FlowBuilder, desired_flows, is_copy_of
from keycloak_config.merge import (
    Setting,
    _covers,
    merge_policy,
    merge_profile,
    merged_locales,
    merged_value,
    rule_words,
    same_policy,
)
from keycloak_config.options import (
    BLOCKLIST_FILE,
    CONFIG_DIR,
    FAST_HASH,
    ApplyError,
    ApplyOptions,
    load,
)
from keycloak_config.ownership import InstallRecord
from keycloak_config.paging import every_account, every_identity_provider
from keycloak_config.plan import Action, Change, Plan, Planner
from keycloak_config.student_permissions import (
    SERVICE_CLIENT,
    apply_student_permissions,
    refuse_v1_permissions,
)

DEMO_CLIENT = "umpass-demo"
# Read-only, for the service's realm-health check; only with UMPASS_KC_MONITOR_SECRET.
MONITOR_CLIENT = "umpass-realm-monitor"
IDP_KIND, CLIENT_KIND, ROLE_KIND, FLOW_KIND = "identity provider", "client", "realm role", "flow"
ATTRIBUTE_KIND, GROUP_KIND = "profile attribute", "profile group"
TEXT_KIND = "localization text"  # names are "<locale>/<key>"
LOCALE_KIND = "localization locale"  # a locale that had no realm texts before

_DERIVED_DESCRIPTIONS = {
    "browserFlow": "UMPASS: the realm's browser flow, username first; pending accounts go to "
    "activation and never reach a password form; other accounts sign in as before.",
    "directGrantFlow": "UMPASS: the realm's direct grant flow; a pending account is refused "
    "after the password check.",
    "resetCredentialsFlow": "UMPASS: every reset refused; students reset or unlock at the "
    "service's /recover/.",
}


class RealmApplier(Planner):
    """Brings one realm in line with keycloak_config/; `apply()` returns the plan."""

    def __init__(
        self, options: ApplyOptions, *, dry_run: bool = False, admin: KeycloakAdmin | None = None
    ) -> None:
        """`admin`: another connection to read through (the realm-health check plans with
        the read-only monitor account); writes need the master-realm admin of `options`."""
        super().__init__(options.realm, dry_run=dry_run)
        self.options = options
        self.record = InstallRecord()
        self.admin: KeycloakAdmin = admin or options.admin()
        self.realm = options.realm
        self._derived: dict[str, tuple[str, str, list[Any], list[Any]]] | None = None
        self._providers: list[tuple[str, str | None, str, str, list[Any]]] | None = None
        self._authenticators: set[str] | None = None

    # -- bookkeeping -----------------------------------------------------------------

    def _adopt(self, kind: str, name: str) -> None:
        """An object of the extension's (by its name in keycloak_config/) that an earlier
        version made without a record becomes recorded, so that uninstall removes it."""
        if not self.dry_run and not self.record.created_by_us(kind, name):
            self.record.note_created(kind, name)
            self._save_record()

    def _save_record(self) -> None:
        if not self.dry_run:
            self.record.save(self.admin, self.realm)

    # -- the steps -------------------------------------------------------------------

    def apply(self) -> Plan:
        if self.ensure_realm() and self.dry_run:
            return self.plan  # nothing further can be compared in a missing realm
        self.admin.change_current_realm(self.realm)
        self.record = InstallRecord.load(self.admin, self.realm)
        self.derived_flows()
        self.derived_providers()
        self._refuse_undeclared_values()
        refuse_v1_permissions(self)
        self.apply_realm_settings()
        self.apply_user_profile()
        self.apply_localization_texts()
        self.apply_realm_roles()
        # Before the clients: a client apply makes gets the realm's default scopes then.
        apply_claim_scopes(self, self.options.variables)
        self.apply_clients()
        self.apply_client_role_scopes()
        self.apply_flows_and_identity_provider()
        apply_student_permissions(self)  # before the service's roles narrow to it
        self.apply_service_account_roles()
        self.note_left_alone()
        return self.plan

    def note_left_alone(self) -> None:
        """Name what the realm holds besides the extension's: the plan says it stays."""
        clients = sorted(
            c["clientId"]
            for c in self.admin.get_clients()
            if not c["clientId"].startswith("umpass-")
        )
        self._keep(f"clients {', '.join(clients)}", "not the extension's")
        roles = load("realm-roles.json", self.options.variables)
        ours = {r["name"] for r in roles}
        others = sorted(r["name"] for r in self.admin.get_realm_roles() if r["name"] not in ours)
        self._keep(f"realm roles {', '.join(others)}", "not the extension's")
        providers = sorted(
            p["alias"]
            for p in every_identity_provider(self.admin, self.realm)
            if p["alias"] != flow_merge.ACTIVATION_PROVIDER
        )
        if providers:
            self._keep(
                f"identity providers {', '.join(providers)}",
                "not the extension's; only their post-login flow gains the pending check",
            )
        self._keep(
            "every account and its attributes",
            "apply writes to no account beyond adding enrolled students to their group",
        )

    def ensure_realm(self) -> bool:
        names = {r["realm"] for r in self.admin.get_realms()}
        if self.realm in names:
            return False
        spec = load("realm.json", self.options.variables)
        if self._write(
            Change(
                "add",
                f"realm {self.realm}",
                why="new: everything the extension needs",
                item="realm",
                name=self.realm,
            )
        ):
            self.admin.create_realm(spec["new_realm"], skip_exists=True)
        return True

    def apply_realm_settings(self) -> None:
        spec = load("realm.json", self.options.variables)
        current = self.admin.get_realm(self.realm)
        update: dict[str, Any] = {}
        for raw in spec["settings"]:
            setting = Setting(raw["key"], raw["rule"], raw["value"], raw["why"])
            old = current.get(setting.key)
            new = merged_value(setting, old)
            if new == old:
                self._keep(f"{setting.key} {_show(old)}", rule_words(setting))
                continue
            action = (
                "raise" if setting.rule in ("at_most", "at_least", "one_of_at_least") else "change"
            )
            self._write(
                Change(
                    action,
                    setting.key,
                    _show(old),
                    _show(new),
                    setting.why,
                    item="setting",
                    name=setting.key,
                )
            )
            update[setting.key] = new

        ours = spec["password_policy"] + (f" and {FAST_HASH}" if self.options.fast_hash else "")
        try:
            policy = merge_policy(current.get("passwordPolicy"), ours)
        except ValueError as exc:
            raise ApplyError(f"the realm's password policy cannot be read: {exc}") from None
        if not same_policy(current.get("passwordPolicy"), policy.policy):
            kept = f"; kept: {', '.join(policy.kept)}" if policy.kept else ""
            self._write(
                Change(
                    "raise",
                    "password policy",
                    _show(current.get("passwordPolicy")),
                    policy.policy,
                    f"{'; '.join(policy.raised)}{kept}",
                    item="password-policy",
                )
            )
            update["passwordPolicy"] = policy.policy
        else:
            self._keep(f"password policy {policy.policy}", "meets every rule of the extension")

        locales = merged_locales(current.get("supportedLocales"), spec["locales"])
        if sorted(locales) != sorted(current.get("supportedLocales") or []):
            added = [x for x in locales if x not in (current.get("supportedLocales") or [])]
            self._write(
                Change(
                    "add",
                    f"locales {', '.join(added)}",
                    why="the realm's own locales stay",
                    item="locales",
                    name=", ".join(added),
                )
            )
            update["supportedLocales"] = locales

        theme = spec["login_theme"]
        if self.options.theme and current.get("loginTheme") != theme:
            self._write(
                Change(
                    "change",
                    "loginTheme",
                    _show(current.get("loginTheme")),
                    theme,
                    "--theme",
                    item="setting",
                    name="loginTheme",
                )
            )
            update["loginTheme"] = theme
        elif not self.options.theme and current.get("loginTheme") != theme:
            self._keep(
                f"loginTheme {_show(current.get('loginTheme'))}",
                "the realm's brand; --theme switches it to umpass",
            )
        for key, why in spec["left_alone"]:
            self._keep(f"{key} {_show(current.get(key))}", why)

        if not update or self.dry_run:
            return
        for key, value in update.items():
            if key != "passwordPolicy":
                self.record.note_changed(f"realm.{key}", current.get(key), value)
        # The policy is recorded rule by rule, so that uninstall takes back only ours.
        for rule, (had, before, after) in policy.changes.items():
            self.record.note_changed(f"policy.{rule}", [had, before], after)
        self._save_record()
        try:
            self.admin.update_realm(self.realm, update)
        except KeycloakError as exc:
            body = (exc.response_body or b"").decode("utf-8", "replace")
            if "blacklist" in body.lower():
                raise ApplyError(
                    f"Keycloak cannot find the password blocklist: copy "
                    f"keycloak_config/{BLOCKLIST_FILE} into data/password-blacklists/ "
                    "of every Keycloak node (scripts/keycloak start does this)"
                ) from exc
            raise

    def _refuse_undeclared_values(self) -> None:
        """Accounts that already hold a value under a name the extension would declare
        (an unmanaged attribute) would have it validated, and removed by an uninstall
        with --remove-activation-data: stop before anything is written."""
        ours = load("user-profile.json", self.options.variables)
        profile = self.admin.connection.raw_get(f"admin/realms/{self.realm}/users/profile").json()
        declared = {a["name"] for a in profile.get("attributes", [])}
        adding = {a["name"] for a in ours["attributes"]} - declared
        if not adding:
            return
        holders: dict[str, int] = {}
        for user in every_account(self.admin):
            for name in adding & set(user.get("attributes") or {}):
                holders[name] = holders.get(name, 0) + 1
        if holders:
            held = ", ".join(
                f"{name} ({count} accounts)" for name, count in sorted(holders.items())
            )
            raise ApplyError(
                f"accounts already hold attributes the extension would declare: {held}; "
                "rename or remove them (they are the realm's data, not the extension's), "
                "then run apply again"
            )

    def apply_user_profile(self) -> None:
        ours = load("user-profile.json", self.options.variables)
        path = f"admin/realms/{self.realm}/users/profile"
        response = self.admin.connection.raw_get(path)
        try:
            current = response.json()
        except ValueError:
            raise ApplyError(
                f"Keycloak answered the user profile with HTTP {response.status_code}, not JSON"
            ) from None
        merged = merge_profile(current, ours)
        writes = False
        for name in merged.added_attributes:
            writes |= self._write(
                Change(
                    "add",
                    f"user-profile attribute {name}",
                    why="admin-only",
                    item="profile-attribute",
                    name=name,
                )
            )
        for name in merged.changed_attributes:
            writes |= self._write(
                Change(
                    "change",
                    f"user-profile attribute {name}",
                    why="the realm declared it; the extension needs it admin-only and validated",
                    item="profile-attribute",
                    name=name,
                )
            )
        for name in merged.added_groups:
            writes |= self._write(
                Change("add", f"user-profile group {name}", item="profile-group", name=name)
            )
        if merged.kept_attributes:
            self._keep(f"user-profile attributes {', '.join(merged.kept_attributes)}")
        if "unmanagedAttributePolicy" in current:
            self._keep(f"unmanagedAttributePolicy {current['unmanagedAttributePolicy']}")
        if not writes:
            return
        for name in merged.added_attributes:
            self.record.note_created(ATTRIBUTE_KIND, name)
        for name, before in merged.changed_attributes.items():
            after = next(a for a in merged.profile["attributes"] if a["name"] == name)
            self.record.note_changed(f"profile.{name}", before, after)
        for name in merged.added_groups:
            self.record.note_created(GROUP_KIND, name)
        self._save_record()
        response = self.admin.connection.raw_put(path, data=json.dumps(merged.profile))
        if response.status_code >= 300:
            raise ApplyError(f"Keycloak refused the user profile: {response.text[:300]}")

    def apply_localization_texts(self) -> None:
        """The texts of the pages the extension's flows can show (a pending account
        refused), as realm texts that any login theme shows. With the umpass theme they
        come from the theme instead, so the extension's realm texts are removed."""
        spec = load("realm.json", self.options.variables)
        theme = (
            self.options.theme
            or self.admin.get_realm(self.realm).get("loginTheme") == spec["login_theme"]
        )
        base = f"admin/realms/{self.realm}/localization"
        texts: dict[str, dict[str, str]] = load("messages.json", self.options.variables)
        for key, by_locale in texts.items():
            for locale, text in by_locale.items():
                name = f"{locale}/{key}"
                ours = self.record.created_by_us(TEXT_KIND, name)
                current = self.admin.connection.raw_get(f"{base}/{locale}").json().get(key)
                if theme:
                    if ours and self._write(
                        Change(
                            "remove",
                            f"realm text {name}",
                            why="the umpass theme has it",
                            item="realm-text",
                            name=name,
                        )
                    ):
                        self.admin.connection.raw_delete(f"{base}/{locale}/{key}")
                        self.record.forget_created(TEXT_KIND, name)
                        self._save_record()
                    continue
                if current is not None and not ours:
                    self._keep(f"realm text {name}", "the realm's own")
                    continue
                if current == text:
                    continue
                if self._write(
                    Change(
                        "add" if current is None else "change",
                        f"realm text {name}",
                        why="shown when a pending account is refused",
                        item="realm-text",
                        name=name,
                    )
                ):
                    self.record.note_created(TEXT_KIND, name)
                    if locale not in self.admin.connection.raw_get(base).json():
                        self.record.note_created(LOCALE_KIND, locale)
                    self._save_record()
                    # POST of a JSON map adds or updates just these keys (PUT takes text/plain).
                    response = self.admin.connection.raw_post(
                        f"{base}/{locale}", data=json.dumps({key: text})
                    )
                    if response.status_code >= 300:
                        raise ApplyError(
                            f"Keycloak refused realm text {name}: {response.text[:200]}"
                        )

    def apply_realm_roles(self) -> None:
        """The roles staff need in the help-desk console; never touches other roles."""
        wanted = load("realm-roles.json", self.options.variables)
        existing = {r["name"]: r for r in self.admin.get_realm_roles(brief_representation=False)}
        for role in wanted:
            current = existing.get(role["name"])
            if current is None:
                if self._write(
                    Change(
                        "add", f"realm role {role['name']}", item="realm-role", name=role["name"]
                    )
                ):
                    self.record.note_created(ROLE_KIND, role["name"])
                    self._save_record()
                    self.admin.create_realm_role(role, skip_exists=True)
            elif current.get("description") != role["description"] and self._write(
                Change(
                    "change",
                    f"realm role {role['name']}",
                    why="description",
                    item="realm-role",
                    name=role["name"],
                )
            ):
                self.admin.update_realm_role(role["name"], {**current, **role})

    def _client_files(self) -> list[str]:
        return [p.name for p in sorted((CONFIG_DIR / "clients").glob("*.json"))]

    def _without_monitor(self) -> bool:
        return not self.options.variables.get("MONITOR_CLIENT_SECRET")

    def apply_clients(self) -> None:
        existing = {c["clientId"]: c for c in self.admin.get_clients()}
        for name in self._client_files():
            if name == f"{MONITOR_CLIENT}.json" and self._without_monitor():
                if MONITOR_CLIENT in existing:
                    self._keep(f"client {MONITOR_CLIENT}", "UMPASS_KC_MONITOR_SECRET not set")
                continue
            desired = load(f"clients/{name}", self.options.variables)
            client_id = desired["clientId"]
            current = existing.get(client_id)
            if client_id == DEMO_CLIENT and not self.options.with_demo:
                self._drop_demo_client(current)
                continue
            if current is None:
                if self._write(
                    Change(
                        "add",
                        f"client {client_id}",
                        why=desired.get("description", ""),
                        item="client",
                        name=client_id,
                    )
                ):
                    self.record.note_created(CLIENT_KIND, client_id)
                    self._save_record()
                    self.admin.create_client(desired, skip_exists=True)
                continue
            self._adopt(CLIENT_KIND, client_id)
            comparable = dict(desired)
            if not self.options.compare_secrets:
                comparable.pop("secret", None)
            if not _covers(current, comparable) and self._write(
                Change("change", f"client {client_id}", item="client", name=client_id)
            ):
                self.admin.update_client(current["id"], desired)

    def _drop_demo_client(self, current: Mapping[str, Any] | None) -> None:
        if current is None:
            return
        if not self.record.created_by_us(CLIENT_KIND, DEMO_CLIENT):
            self._keep(f"client {DEMO_CLIENT}", "not created by the extension")
        elif self._write(
            Change(
                "remove",
                f"client {DEMO_CLIENT}",
                why="only with --with-demo",
                item="client",
                name=DEMO_CLIENT,
            )
        ):
            self.admin.delete_client(current["id"])
            self.record.forget_created(CLIENT_KIND, DEMO_CLIENT)
            self._save_record()

    def apply_client_role_scopes(self) -> None:
        """The realm roles a client without full scope may put in its tokens: exactly
        these (the help-desk console sees its two roles, not every role of a staff member)."""
        wanted_by_client: dict[str, list[str]] = load(
            "client-role-scopes.json", self.options.variables
        )
        clients = {c["clientId"]: c for c in self.admin.get_clients()}
        for client_id, wanted in wanted_by_client.items():
            if client_id not in clients:  # created in a dry run only
                self._write(_scope_change("add", client_id, sorted(wanted)))
                continue
            client_uuid = clients[client_id]["id"]
            path = f"admin/realms/{self.realm}/clients/{client_uuid}/scope-mappings/realm"
            held = {r["name"]: r for r in self.admin.connection.raw_get(path).json()}
            roles = {r: self.admin.get_realm_role(r) for r in wanted if r not in held}
            extra = [r for name, r in held.items() if name not in wanted]
            if roles and self._write(_scope_change("add", client_id, sorted(roles))):
                self.admin.connection.raw_post(path, data=json.dumps(list(roles.values())))
            if extra and self._write(
                _scope_change("remove", client_id, [r["name"] for r in extra])
            ):
                self.admin.connection.raw_delete(path, data=json.dumps(extra))

    # -- flows -----------------------------------------------------------------------

    def _source_flow(
        self, binding: str, logical: str, builtin: str, current: str | None, aliases: set[str]
    ) -> str:
        """The realm's own flow to build ours from: the one bound now when it is not ours
        (an admin may have bound another since), else the one bound before the extension
        (recorded). Keycloak's built-in flow only for a realm an earlier version of the
        extension set up without a record."""
        if current and not is_copy_of(current, logical):
            return current
        before = self.record.previous.get(f"binding.{binding}")
        if before in aliases:
            return str(before)
        if before is None and f"binding.{binding}" not in self.record.previous:
            return builtin
        raise ApplyError(
            f"the flow {before!r} the realm had under {binding} before the extension is gone: "
            f"bind the flow you want there, then run apply again"
        )

    def _ensure_flow(
        self, builder: FlowBuilder, desired: dict[str, Any], why: str
    ) -> tuple[str, list[str]]:
        """The alias of a copy matching `desired` (built when none does) and the others."""
        name = desired["alias"]
        existing = builder.candidates(name)
        keep = next((a for a in existing if builder.matches(a, desired)), None)
        if keep is None:
            action = "change" if existing else "add"
            if self._write(Change(action, f"flow {name}", why=why, item="flow", name=name)):
                self.record.note_created(FLOW_KIND, name)
                self._save_record()
                keep = builder.build(desired)
            else:
                keep = name
        return keep, [a for a in existing if a != keep]

    def derived_flows(self) -> dict[str, tuple[str, str, list[Any], list[Any]]]:
        """For each binding: our flow's name, the realm's flow it is built from, that
        flow's tree and ours. Worked out before anything is written, so that a realm
        flow the extension cannot carry stops `apply` with the realm untouched."""
        if self._derived is None:
            builder = FlowBuilder(self.admin, self.realm)
            realm = self.admin.get_realm(self.realm)
            top_level = builder.top_level()  # one read for every binding and the overrides
            aliases = {f["alias"] for f in top_level}
            self._derived = {}
            for binding, (logical, transform, builtin) in flow_merge.DERIVED.items():
                current = realm.get(binding)
                source = self._source_flow(binding, logical, builtin, current, aliases)
                source_tree = builder.tree(source)
                try:
                    tree = transform(source_tree, source)
                except flow_merge.FlowMergeError as exc:
                    raise ApplyError(str(exc)) from None
                tree = self._with_addon_steps(binding, tree)
                self._derived[binding] = (logical, source, source_tree, tree)
            self._refuse_client_overrides(top_level)
        return self._derived

    def _offered(self) -> set[str]:
        """The authenticators Keycloak offers (read once per apply)."""
        if self._authenticators is None:
            response = self.admin.connection.raw_get(
                f"admin/realms/{self.realm}/authentication/authenticator-providers"
            )
            if response.status_code >= 300:
                raise ApplyError(
                    f"Keycloak answered its list of authenticators with HTTP {response.status_code}"
                )
            self._authenticators = {p["id"] for p in response.json()}
            if flow_merge.LOGIN_HINT_STEP not in self._authenticators:
                self.plan.notes.append(
                    f"Keycloak has no {flow_merge.LOGIN_HINT_STEP} authenticator, so the user "
                    "ID a student types at sign-in is not carried over to activation (they "
                    "type it again there): to carry it over, build the JAR (scripts/keycloak "
                    "addon), put it in providers/ of every Keycloak node, run kc.sh build, "
                    "restart, and apply again"
                )
            if flow_merge.POLICY_GATE_STEP not in self._authenticators:
                self.plan.notes.append(
                    f"Keycloak has no {flow_merge.POLICY_GATE_STEP} authenticator, so active "
                    "students are not asked to accept a newly published policy version when "
                    "they sign in: install the JAR as above"
                )
        return self._authenticators

    def _gated(self, tree: list[Any], *, refuse: bool = False) -> list[Any]:
        """`tree` with the policy gate last, where Keycloak offers it (`refuse`: where no
        page can be shown, a due student is refused)."""
        service = self.options.variables
        return flow_merge.gate_policies(
            tree,
            self._offered(),
            current_url=service["SERVICE_BACKCHANNEL_URL"] + "/policies/current",
            page_url=service["SERVICE_BASE_URL"] + "/policies/review",
            cache_seconds=service["POLICY_GATE_CACHE_SECONDS"],
            refuse=refuse,
        )

    def _with_addon_steps(self, binding: str, tree: list[Any]) -> list[Any]:
        """The browser flow carries the typed user ID on to activation; it and the direct
        grant stop a student who lacks a current policy version, where Keycloak has the
        project's authenticators (keycloak_addon/login-hint); the plan says when not."""
        if binding == "browserFlow":
            return flow_merge.pass_user_id_on(self._gated(tree), self._offered())
        if binding == "directGrantFlow":
            return self._gated(tree, refuse=True)
        return tree

    def _refuse_client_overrides(self, top_level: list[dict[str, Any]]) -> None:
        """A client that overrides the browser or direct grant flow with one of the
        realm's own would let pending accounts sign in there."""
        names = {f["id"]: f["alias"] for f in top_level}
        ours = [logical for logical, _, _ in flow_merge.DERIVED.values()]
        found = []
        for client in self.admin.get_clients():
            for kind, flow_id in (client.get("authenticationFlowBindingOverrides") or {}).items():
                alias = names.get(flow_id, flow_id)
                if kind in ("browser", "direct_grant") and not any(
                    is_copy_of(alias, n) for n in ours
                ):
                    found.append(f"{client['clientId']} ({kind}: {alias!r})")
        if found:
            raise ApplyError(
                f"client{'s' * (len(found) > 1)} {', '.join(found)} override the realm's sign-in "
                "flow, where a pending account would not be stopped: remove the override "
                "(client, Advanced, Authentication flow overrides), then run apply again"
            )

    def apply_flows_and_identity_provider(self) -> None:
        """Flows first (new copies beside the old), then bindings and the identity
        provider point at them, and only then are superseded copies deleted."""
        builder = FlowBuilder(self.admin, self.realm)
        realm = self.admin.get_realm(self.realm)
        resolved: dict[str, str] = {}
        superseded: list[str] = []
        for desired in desired_flows():
            keep, old = self._ensure_flow(builder, desired, "used only by the activation provider")
            resolved[desired["alias"]] = keep
            superseded += old
        for binding, (logical, source, source_tree, tree) in self.derived_flows().items():
            current = realm.get(binding)
            desired = {
                "alias": logical,
                "description": _DERIVED_DESCRIPTIONS[binding],
                "executions": tree,
            }
            kept = _summary(source_tree, within=tree)
            why = (
                f"built from {source!r}, keeping {kept}"
                if kept
                else f"in place of {source!r}: refuses every request"
            )
            if flow_merge.LOGIN_HINT_STEP in _steps(tree):
                why += (
                    f"; with {flow_merge.LOGIN_HINT_STEP}: the user ID typed at sign-in "
                    "goes on to activation"
                )
            if flow_merge.POLICY_GATE_STEP in _steps(tree):
                why += (
                    f"; with {flow_merge.POLICY_GATE_STEP}: a newly published policy "
                    "version is accepted before any application"
                )
            keep, old = self._ensure_flow(builder, desired, why)
            superseded += old
            if current != keep and self._write(
                Change(
                    "change",
                    f"{binding} binding",
                    _show(current),
                    logical,
                    f"was {current!r}",
                    item="binding",
                    name=binding,
                )
            ):
                if not is_copy_of(current, logical):
                    # Uninstall puts back what was bound just before ours.
                    self.record.forget_changed(f"binding.{binding}")
                    self.record.note_changed(f"binding.{binding}", current, logical)
                    self._save_record()
                self.admin.update_realm(self.realm, {binding: keep})
        self.apply_identity_provider(resolved)
        superseded += self.apply_other_providers(builder)
        for alias in superseded:
            if self._write(
                Change("remove", f"flow {alias}", why="superseded", item="flow", name=alias)
            ):
                builder.delete(alias)

    def derived_providers(self) -> list[tuple[str, str | None, str, str, list[Any]]]:
        """For every other identity provider: its alias, its post-login flow now, what
        ours is built from (in words), our flow's name and tree. Worked out before any
        write, like `derived_flows`."""
        if self._providers is not None:
            return self._providers
        builder = FlowBuilder(self.admin, self.realm)
        aliases = {f["alias"] for f in builder.top_level()}
        self._providers = []
        for provider in every_identity_provider(self.admin, self.realm):
            alias = provider["alias"]
            if alias == flow_merge.ACTIVATION_PROVIDER:
                continue
            key = f"idp.{alias}.postBrokerLoginFlowAlias"
            current = provider.get("postBrokerLoginFlowAlias") or None
            source = current
            if flow_merge.is_post_broker_copy(current):
                if key not in self.record.previous:
                    raise ApplyError(
                        f"identity provider {alias} has the extension's post-login flow, but "
                        "the install record does not say what it had before: set its "
                        "post-login flow (or none) in the console, then run apply again"
                    )
                source = self.record.previous[key]
            why = f"after its own {source!r}" if source else "the check alone"
            if source and source not in aliases:
                why = f"the check alone: its earlier post-login flow {source!r} is gone"
                source = None
            # After another provider too: its sign-ins never run the browser flow.
            tree = self._gated(
                flow_merge.post_broker_login(builder.tree(source) if source else None)
            )
            self._providers.append((alias, current, why, flow_merge.post_broker_name(source), tree))
        return self._providers

    def apply_other_providers(self, builder: FlowBuilder) -> list[str]:
        """Every other identity provider gets a post-login flow that refuses a pending
        account (its own post-login steps kept); returns superseded copies."""
        base = f"admin/realms/{self.realm}/identity-provider/instances"
        superseded: list[str] = []
        for alias, current, why, logical, tree in self.derived_providers():
            desired = {
                "alias": logical,
                "description": "UMPASS: after another identity provider, a pending account "
                "is refused.",
                "executions": tree,
            }
            keep, old = self._ensure_flow(builder, desired, why)
            superseded += [a for a in old if a not in superseded]
            if current == keep or not self._write(
                Change(
                    "change",
                    f"identity provider {alias}: post-login flow",
                    _show(current),
                    logical,
                    "a pending account signing in through it is refused",
                    item="provider-post-login",
                    name=alias,
                )
            ):
                continue
            if not flow_merge.is_post_broker_copy(current):
                key = f"idp.{alias}.postBrokerLoginFlowAlias"
                self.record.forget_changed(key)
                self.record.note_changed(key, current, logical)
                self._save_record()
            full = self.admin.connection.raw_get(f"{base}/{alias}").json()
            _check(
                self.admin.connection.raw_put(
                    f"{base}/{alias}", data=json.dumps({**full, "postBrokerLoginFlowAlias": keep})
                )
            )
        return superseded

    def apply_identity_provider(self, flows: Mapping[str, str]) -> None:
        desired = load("identity-provider.json", self.options.variables)
        mappers = desired.pop("mappers")
        for key in ("firstBrokerLoginFlowAlias", "postBrokerLoginFlowAlias"):
            if key in desired:
                desired[key] = flows.get(desired[key], desired[key])
        alias = desired["alias"]
        path = f"admin/realms/{self.realm}/identity-provider/instances"
        response = self.admin.connection.raw_get(f"{path}/{alias}")
        if response.status_code == 404:
            if self._write(
                Change(
                    "add",
                    f"identity provider {alias}",
                    why="the activation service",
                    item="identity-provider",
                    name=alias,
                )
            ):
                self.record.note_created(IDP_KIND, alias)
                self._save_record()
                _check(self.admin.connection.raw_post(path, data=json.dumps(desired)))
            self._apply_provider_mappers(f"{path}/{alias}", alias, mappers, new=True)
            return
        current = response.json()
        self._adopt(IDP_KIND, alias)
        # Keycloak never shows a stored secret back (it answers "**********"), so a
        # changed secret alone is not seen as drift: rotate it by changing another key
        # too, or in the admin console.
        comparable = {**desired, "config": dict(desired["config"])}
        comparable["config"].pop("clientSecret", None)
        if not _covers(current, comparable) and self._write(
            Change("change", f"identity provider {alias}", item="identity-provider", name=alias)
        ):
            _check(self.admin.connection.raw_put(f"{path}/{alias}", data=json.dumps(desired)))
        self._apply_provider_mappers(f"{path}/{alias}", alias, mappers)

    def _apply_provider_mappers(
        self, path: str, alias: str, wanted: list[dict[str, Any]], *, new: bool = False
    ) -> None:
        """The provider's own mappers (e.g. the one that spends the handoff ticket)."""
        existing: dict[str, Any] = {}
        if not (new and self.dry_run):  # a provider still to be made has none to read
            mappers = self.admin.connection.raw_get(f"{path}/mappers").json()
            existing = {m["name"]: m for m in mappers}
        for mapper in wanted:
            desired = {**mapper, "identityProviderAlias": alias}
            current = existing.get(mapper["name"])
            if current is None:
                if self._write(_mapper_change("add", alias, mapper["name"])):
                    _check(
                        self.admin.connection.raw_post(f"{path}/mappers", data=json.dumps(desired))
                    )
            elif not _covers(current, desired) and self._write(
                _mapper_change("change", alias, mapper["name"])
            ):
                _check(
                    self.admin.connection.raw_put(
                        f"{path}/mappers/{current['id']}",
                        data=json.dumps({**desired, "id": current["id"]}),
                    )
                )

    # -- service accounts ------------------------------------------------------------

    def apply_service_account_roles(self) -> None:
        wanted_by_client: dict[str, list[str]] = load(
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
        default_role = f"default-roles-{self.realm}"
        for client_id, wanted in wanted_by_client.items():
            if client_id == MONITOR_CLIENT and client_id not in clients and self._without_monitor():
                continue
            if client_id not in clients:  # created in a dry run only
                self._write(_roles_change("add", client_id, sorted(wanted)))
                continue
            user = self.admin.get_client_service_account_user(clients[client_id]["id"])
            # Roles can also come through groups or realm roles: a service account
            # holds none of those beyond the realm's default role.
            for group in self.admin.get_user_groups(user["id"]):
                if self._write(
                    Change(
                        "remove",
                        f"{client_id} from group {group['name']}",
                        item="service-account-group",
                        name=client_id,
                        part=group["name"],
                    )
                ):
                    self.admin.group_user_remove(user["id"], group["id"])
            extra_realm = [
                r
                for r in self.admin.get_realm_roles_of_user(user["id"])
                if r["name"] != default_role
            ]
            names = ", ".join(sorted(r["name"] for r in extra_realm))
            if extra_realm and self._write(
                Change(
                    "remove",
                    f"{client_id} realm roles: {names}",
                    item="service-account-realm-roles",
                    name=client_id,
                    part=names,
                )
            ):
                self.admin.delete_realm_roles_of_user(user["id"], extra_realm)
            held = {r["name"] for r in self.admin.get_client_roles_of_user(user["id"], rm["id"])}
            to_add = sorted(set(wanted) - held)
            to_remove = sorted(held - set(wanted))
            if to_add and self._write(_roles_change("add", client_id, to_add)):
                self.admin.assign_client_role(user["id"], rm["id"], [available[n] for n in to_add])
            if to_remove and self._write(_roles_change("remove", client_id, to_remove)):
                self.admin.delete_client_roles_of_user(
                    user["id"], rm["id"], [available[n] for n in to_remove]
                )
            if client_id == SERVICE_CLIENT:
                self._refuse_inherited_roles(user["id"], rm["id"], wanted, to_remove)

    def _refuse_inherited_roles(
        self, user_id: str, rm_id: str, wanted: list[str], removed: list[str]
    ) -> None:
        """The service account's effective realm-management roles are exactly `wanted`.

        One more (e.g. view-users put into the realm's default roles, or into a composite)
        reaches every account: Keycloak then skips the fine-grained evaluation."""
        effective = {
            r["name"] for r in self.admin.get_composite_client_roles_of_user(user_id, rm_id)
        }
        if self.dry_run:
            effective -= set(removed)  # a plan: what the removal above would leave
        extra = sorted(effective - set(wanted))
        if extra:
            raise ApplyError(
                f"the {SERVICE_CLIENT} service account still holds {', '.join(extra)} through "
                f"the realm's default roles (default-roles-{self.realm}) or a composite role: "
                "with it the service reaches every account. Remove it from that composite, "
                "then apply again"
            )


def _check(response: Any) -> None:
    if response.status_code >= 300:
        raise ApplyError(f"Keycloak refused the identity provider: {response.text[:300]}")


def _show(value: Any) -> str:
    if value is None or value == "":
        return "(none)"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "(none)"
    return str(value)


_CONDITIONS = {
    "conditional-user-configured",
    "conditional-user-attribute",
    "conditional-credential",
}


def _steps(tree: list[dict[str, Any]]) -> list[str]:
    """A flow's enabled steps, in order, without the conditions."""
    seen: list[str] = []

    def walk(nodes: list[dict[str, Any]]) -> None:
        for node in nodes:
            if node["requirement"] == "DISABLED":
                continue
            step = node.get("authenticator")
            if step and step not in _CONDITIONS and step not in seen:
                seen.append(step)
            walk(node.get("executions", []))

    walk(tree)
    return seen


def _summary(tree: list[dict[str, Any]], *, within: list[dict[str, Any]]) -> str:
    """The realm's steps that the extension's flow (`within`) still runs ("" for none)."""
    ours = set(_steps(within))
    return ", ".join(step for step in _steps(tree) if step in ours)


def _scope_change(action: Action, client_id: str, roles: list[str]) -> Change:
    names = ", ".join(roles)
    return Change(
        action,
        f"scope of {client_id}: roles {names}",
        item="client-scope",
        name=client_id,
        part=names,
    )


def _roles_change(action: Action, client_id: str, roles: list[str]) -> Change:
    names = ", ".join(roles)
    return Change(
        action,
        f"roles of {client_id}: {names}",
        item="service-account-roles",
        name=client_id,
        part=names,
    )


def _mapper_change(action: Action, alias: str, mapper: str) -> Change:
    return Change(
        action,
        f"mapper {mapper} of {alias}",
        item="provider-mapper",
        name=alias,
        part=mapper,
    )
