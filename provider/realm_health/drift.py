"""The drift: what `python -m keycloak_config.apply` would write to the realm now.

Not a comparison of its own: the applier's dry run (`apply_realm(options, dry_run=True)`)
read through the monitor account, so the page says exactly what `apply` would do. Client
secrets are left out (the service never holds the provisioner's), as apply already does
for the identity provider's.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from keycloak import KeycloakAdmin

from keycloak_config.apply import ApplyError, ApplyOptions, apply_realm
from keycloak_config.plan import Change
from provider.config import Settings
from provider.realm_health.monitor import SECRET_VARIABLE, MonitorSettings


class DriftUnreadable(Exception):
    """The realm could not be planned against; the message says why (no secret in it)."""


@dataclass(frozen=True)
class DriftItem:
    """One write apply would make, in the plan's own words."""

    action: str  # add | raise | change | remove (keycloak_config.plan.Action)
    subject: str  # what: a setting, a flow binding, a client ...
    detail: str  # the rest of the plan's line: old → new, and why
    # The same in parts (Change.item, name, part, old, new, why), stored so that the page
    # words each line in the reader's language; `why` stays apply's English.
    item: str = ""
    name: str = ""
    part: str = ""
    old: str | None = None
    new: str | None = None
    why: str = ""

    @classmethod
    def of(cls, change: Change) -> DriftItem:
        whole = change.line()
        return cls(
            change.action,
            change.subject,
            whole.removeprefix(change.subject).lstrip(":— "),
            change.item,
            change.name,
            change.part,
            change.old,
            change.new,
            change.why,
        )

    @property
    def key(self) -> str:
        """Stable across runs: what the alert compares."""
        return f"drift:{self.action} {self.subject}"


def options_for(settings: Settings, health: MonitorSettings) -> ApplyOptions:
    """The options apply runs with, as far as the check knows them."""
    kc = settings.keycloak
    env = {
        "UMPASS_KEYCLOAK_URL": kc.url,
        "UMPASS_REALM": kc.realm,
        "UMPASS_BASE_URL": settings.base_url,
        "UMPASS_BACKCHANNEL_URL": health.backchannel_url,
        "UMPASS_POLICY_GATE_CACHE_SECONDS": health.policy_gate_cache_seconds,
        "UMPASS_BROKER_CLIENT_ID": settings.oidc.broker_client_id,
        "UMPASS_KC_CLIENT_SECRET": kc.client_secret,
        "UMPASS_BROKER_CLIENT_SECRET": settings.oidc.broker_client_secret,
        "UMPASS_HELPDESK_CLIENT_SECRET": settings.helpdesk_client_secret,
        SECRET_VARIABLE: health.secret,
        # Never compared (compare_secrets=False) and never sent: a stand-in, since the
        # check does not hold the provisioning secret.
        "UMPASS_KC_PROVISIONER_SECRET": secrets.token_urlsafe(24),
        # The plan reads through the monitor connection, never with an admin login.
        "KEYCLOAK_ADMIN_USER": "(unused)",
        "KEYCLOAK_ADMIN_PASSWORD": "(unused)",
        "UMPASS_ENV": "development" if settings.development else "production",
    }
    if health.demo_base_url:
        env["UMPASS_DEMO_BASE_URL"] = health.demo_base_url
    options = ApplyOptions.from_env(
        {k: v for k, v in env.items() if v}, theme=health.theme, with_demo=health.with_demo
    )
    options.compare_secrets = False
    return options


def drift(settings: Settings, monitor: MonitorSettings, reader: KeycloakAdmin) -> list[DriftItem]:
    """Every write apply would make now, in the plan's order."""
    try:
        plan = apply_realm(options_for(settings, monitor), dry_run=True, admin=reader)
    except ApplyError as exc:
        raise DriftUnreadable(str(exc)) from None
    return [DriftItem.of(change) for change in plan.writes()]
