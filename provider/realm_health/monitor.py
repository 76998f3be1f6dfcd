"""The scheduled check's own settings and its read-only connection to the realm.

Only `umpass realm-check` (the timer on one host) loads these. The monitor account
`umpass-realm-monitor` holds view-clients, and view-clients reads every client's secret,
the provisioner's (manage-realm) included: its secret must never be in the web service's
environment, so the service's settings (provider/config.py) do not read it, and no web
module imports this one (the import-linter contract "web code does not reach the realm
monitor", and tests/unit/test_realm_health_web.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from keycloak import KeycloakAdmin

from provider.config import ConfigError, Settings
from provider.keycloak_connection import ServiceAccount, admin_api

MONITOR_CLIENT = "umpass-realm-monitor"
SECRET_VARIABLE = "UMPASS_KC_MONITOR_SECRET"  # noqa: S105 (a variable name)


@dataclass(frozen=True)
class MonitorSettings:
    secret: str = field(repr=False)  # UMPASS_KC_MONITOR_SECRET
    alert_email: str = ""  # UMPASS_REALM_ALERT_EMAIL
    # How the realm is applied (UMPASS_REALM_APPLY_FLAGS, e.g. "--theme --with-demo"): the
    # check plans with the same flags, or the demo client would count as drift.
    with_demo: bool = False
    theme: bool = False
    # What apply fills into the identity provider: the same values the operator gives it.
    demo_base_url: str = ""
    backchannel_url: str = ""
    policy_gate_cache_seconds: str = ""  # UMPASS_POLICY_GATE_CACHE_SECONDS


def load_monitor_settings(env: Mapping[str, str] | None = None) -> MonitorSettings:
    env = os.environ if env is None else env
    secret = env.get(SECRET_VARIABLE, "").strip()
    if not secret:
        raise ConfigError(
            f"{SECRET_VARIABLE} is not set: set it on this host only (the one that runs the "
            "timer), run `python -m keycloak_config.apply` with it (which creates the "
            "read-only client umpass-realm-monitor), then check again"
        )
    flags = env.get("UMPASS_REALM_APPLY_FLAGS", "").split()
    unknown = sorted(set(flags) - {"--theme", "--with-demo", "--fast-hash"})
    if unknown:
        raise ConfigError(
            f"UMPASS_REALM_APPLY_FLAGS has {', '.join(unknown)}: only --theme, --with-demo "
            "and --fast-hash change what apply plans"
        )
    alert = env.get("UMPASS_REALM_ALERT_EMAIL", "").strip()
    if alert and ("@" not in alert or any(c in alert for c in " ,;\r\n")):
        raise ConfigError("UMPASS_REALM_ALERT_EMAIL must be one email address")
    return MonitorSettings(
        secret=secret,
        alert_email=alert,
        with_demo="--with-demo" in flags,
        theme="--theme" in flags,
        demo_base_url=env.get("UMPASS_DEMO_BASE_URL", "").strip(),
        backchannel_url=env.get("UMPASS_BACKCHANNEL_URL", "").strip(),
        policy_gate_cache_seconds=env.get("UMPASS_POLICY_GATE_CACHE_SECONDS", "").strip(),
    )


def monitor_api(settings: Settings, monitor: MonitorSettings) -> KeycloakAdmin:
    """A fresh connection per run (one run, then the process ends)."""
    kc = settings.keycloak
    account = ServiceAccount(kc.realm, MONITOR_CLIENT, monitor.secret)
    admin = admin_api(kc.url, account, timeout=kc.timeout_seconds)
    admin.change_current_realm(kc.realm)
    return admin
