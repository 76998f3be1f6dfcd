"""The settings a university must keep, each checked live against the realm.

Each check reads what it needs through the monitor account and says OK or what is wrong.
Its title and why it matters are plain English message ids (texts.py), translated
where the page shows them (the JSON stays English, for monitoring). The expected values
come from keycloak_config itself (its flow names, its service-account roles, its user
profile), so a check can never disagree with what `apply` sets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from keycloak import KeycloakAdmin

from keycloak_config.applier import MONITOR_CLIENT
from keycloak_config.flow_merge import ACTIVATION_PROVIDER, DERIVED
from keycloak_config.flows import is_copy_of
from keycloak_config.options import load
from keycloak_config.student_permissions import SERVICE_CLIENT
from provider.realm_health.drift import options_for
from provider.realm_health.monitor import MonitorSettings
from provider.realm_health.texts import TEXTS

REDIRECTOR = "identity-provider-redirector"


@dataclass(frozen=True)
class Outcome:
    ok: bool
    found: str = ""  # what the realm holds, when it is wrong (names and values, no secret)


@dataclass(frozen=True)
class Check:
    key: str
    title: Any  # lazy message: str() gives the language of the request, or English
    why: Any
    run: Callable[[RealmView], Outcome]


@dataclass(frozen=True)
class CheckResult:
    key: str
    title: Any
    why: Any
    ok: bool
    found: str

    @property
    def problem_key(self) -> str:
        return f"check:{self.key}"


class RealmView:
    """What the checks read, each piece once per report."""

    def __init__(self, reader: KeycloakAdmin, realm: str, variables: dict[str, str]) -> None:
        self.reader, self.realm_name, self.variables = reader, realm, variables
        self._realm: dict[str, Any] | None = None
        self._provider: dict[str, Any] | None = None

    def get(self, path: str) -> Any:
        response = self.reader.connection.raw_get(f"admin/realms/{self.realm_name}/{path}")
        response.raise_for_status()
        return response.json()

    @property
    def realm(self) -> dict[str, Any]:
        if self._realm is None:
            self._realm = self.reader.get_realm(self.realm_name)
        return self._realm

    @property
    def provider(self) -> dict[str, Any] | None:
        if self._provider is None:
            response = self.reader.connection.raw_get(
                f"admin/realms/{self.realm_name}/identity-provider/instances/{ACTIVATION_PROVIDER}"
            )
            if response.status_code == 404:
                return None
            response.raise_for_status()
            self._provider = response.json()
        return self._provider


def _bound(binding: str) -> Callable[[RealmView], Outcome]:
    logical = DERIVED[binding][0]

    def run(view: RealmView) -> Outcome:
        alias = view.realm.get(binding)
        return Outcome(is_copy_of(alias, logical), f"{binding} = {alias!r}")

    return run


def _first_broker_login(view: RealmView) -> Outcome:
    provider = view.provider
    if provider is None:
        return Outcome(False, f"no identity provider {ACTIVATION_PROVIDER}")
    wanted = load("identity-provider.json", view.variables)
    wrong = [
        f"{key} = {provider.get(key)!r}"
        for key in ("firstBrokerLoginFlowAlias", "postBrokerLoginFlowAlias")
        if not is_copy_of(provider.get(key), wanted[key])
    ]
    return Outcome(not wrong, "; ".join(wrong))


def _no_redirector_on_top(view: RealmView) -> Outcome:
    """A redirector with a default provider, outside any conditional sub-flow, sends every
    sign-in to that provider before the user ID is asked: pending and active accounts
    alike, around the pending check. (The realm's own redirector that only honours
    `kc_idp_hint` may stay; ours sits inside the `pending` condition.)"""
    found = []
    for binding in ("browserFlow", "directGrantFlow"):
        alias = view.realm.get(binding)
        if not alias:
            continue
        guards: list[tuple[int, bool]] = []  # (level, conditional) of the sub-flows above
        for step in view.get(f"authentication/flows/{_quote(alias)}/executions"):
            level = step.get("level", 0)
            guards = [g for g in guards if g[0] < level]
            enabled = step.get("requirement") != "DISABLED"
            if step.get("authenticationFlow"):
                guards.append((level, step.get("requirement") == "CONDITIONAL"))
                continue
            if step.get("providerId") != REDIRECTOR or not enabled or any(c for _, c in guards):
                continue
            config_id = step.get("authenticationConfig")
            config = view.get(f"authentication/config/{config_id}") if config_id else {}
            default = (config.get("config") or {}).get("defaultProvider")
            if default:
                found.append(f"{alias}: {REDIRECTOR} to {default} ({step.get('requirement')})")
    return Outcome(not found, "; ".join(found))


# What keeps a forged or replayed answer out: where tokens and keys come from, that
# signatures and PKCE are checked, and that the provider never overwrites an account.
_PROVIDER_CONFIG = (
    "issuer",
    "tokenUrl",
    "jwksUrl",
    "validateSignature",
    "pkceEnabled",
    "pkceMethod",
    "syncMode",
    "clientId",
    "clientAuthMethod",
)


def _provider_settings(view: RealmView) -> Outcome:
    provider = view.provider
    if provider is None:
        return Outcome(False, f"no identity provider {ACTIVATION_PROVIDER}")
    wanted = load("identity-provider.json", view.variables)
    config = provider.get("config") or {}
    wrong = [
        f"{key} = {provider.get(key)!r}"
        for key in ("enabled", "hideOnLogin", "trustEmail", "linkOnly")
        if provider.get(key) != wanted[key]
    ]
    wrong += [
        f"{key} = {config.get(key)!r}"
        for key in _PROVIDER_CONFIG
        if config.get(key) != wanted["config"][key]
    ]
    return Outcome(not wrong, "; ".join(wrong))


def _activation_state_admin_only(view: RealmView) -> Outcome:
    profile = view.get("users/profile")
    found = next(
        (a for a in profile.get("attributes", []) if a.get("name") == "activation_state"), None
    )
    if found is None:
        return Outcome(False, "activation_state is not declared in the user profile")
    permissions = found.get("permissions") or {}
    view_by, edit_by = permissions.get("view") or [], permissions.get("edit") or []
    ok = set(view_by) <= {"admin"} and set(edit_by) <= {"admin"}
    return Outcome(ok, f"view: {', '.join(view_by)}; edit: {', '.join(edit_by)}")


def _setting(key: str, wanted: object) -> Callable[[RealmView], Outcome]:
    def run(view: RealmView) -> Outcome:
        value = view.realm.get(key)
        return Outcome(value == wanted, f"{key} = {value!r}")

    return run


def _reset_credentials(view: RealmView) -> Outcome:
    realm = view.realm
    logical = DERIVED["resetCredentialsFlow"][0]
    wrong = []
    if not is_copy_of(realm.get("resetCredentialsFlow"), logical):
        wrong.append(f"resetCredentialsFlow = {realm.get('resetCredentialsFlow')!r}")
    if realm.get("resetPasswordAllowed") is not False:
        wrong.append(f"resetPasswordAllowed = {realm.get('resetPasswordAllowed')!r}")
    return Outcome(not wrong, "; ".join(wrong))


def _service_account_roles(view: RealmView) -> Outcome:
    """Each account's own roles are exactly keycloak_config's; the activation service's
    effective ones too (composites and the default role included): one more role there,
    such as view-users, switches the fine-grained evaluation off and reaches every account."""
    wanted: dict[str, list[str]] = load("service-accounts.json", view.variables)
    if not view.variables.get("MONITOR_CLIENT_SECRET"):
        wanted.pop(MONITOR_CLIENT, None)
    clients = {c["clientId"]: c for c in view.reader.get_clients()}
    rm = clients["realm-management"]["id"]
    wrong = []
    for client_id, roles in wanted.items():
        if client_id not in clients:
            wrong.append(f"{client_id}: missing")
            continue
        user = view.reader.get_client_service_account_user(clients[client_id]["id"])
        held = {r["name"] for r in view.reader.get_client_roles_of_user(user["id"], rm)}
        if client_id == SERVICE_CLIENT:
            held |= {
                r["name"] for r in view.reader.get_composite_client_roles_of_user(user["id"], rm)
            }
        more, fewer = sorted(held - set(roles)), sorted(set(roles) - held)
        if more:
            wrong.append(f"{client_id}: extra {', '.join(more)}")
        if fewer:
            wrong.append(f"{client_id}: lacks {', '.join(fewer)}")
    return Outcome(not wrong, "; ".join(wrong))


def _quote(alias: str) -> str:
    from urllib.parse import quote

    return quote(alias, safe="")


CHECKS: tuple[Check, ...] = tuple(
    Check(key, *TEXTS[key], run)
    for key, run in (
        ("browser-flow", _bound("browserFlow")),
        ("direct-grant-flow", _bound("directGrantFlow")),
        ("first-broker-login", _first_broker_login),
        ("no-redirector-on-top", _no_redirector_on_top),
        ("identity-provider", _provider_settings),
        ("activation-state-admin-only", _activation_state_admin_only),
        ("duplicate-emails-off", _setting("duplicateEmailsAllowed", False)),
        ("reset-credentials", _reset_credentials),
        ("brute-force", _setting("bruteForceProtected", True)),
        ("service-account-roles", _service_account_roles),
    )
)


def run_checks(reader: KeycloakAdmin, settings: Any, monitor: MonitorSettings) -> list[CheckResult]:
    """Every check; one that cannot read what it needs is red with the reason."""
    options = options_for(settings, monitor)
    view = RealmView(reader, settings.keycloak.realm, options.variables)
    results = []
    for check in CHECKS:
        try:
            outcome = check.run(view)
        except Exception as exc:  # one unreadable check must not hide the rest
            outcome = Outcome(False, f"could not be read ({type(exc).__name__})")
        results.append(
            CheckResult(
                check.key, check.title, check.why, outcome.ok, "" if outcome.ok else outcome.found
            )
        )
    return results
