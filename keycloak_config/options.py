"""Who and what `keycloak_config.apply` works on: the server, the realm, the variables."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keycloak import KeycloakAdmin

from provider.keycloak_connection import MasterAdmin, admin_api
from provider.secret_strength import refusal

CONFIG_DIR = Path(__file__).resolve().parent
FAST_HASH = "hashAlgorithm(pbkdf2-sha256) and hashIterations(1)"
BLOCKLIST_FILE = "umpass-common-passwords.txt"
_PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")


CLIENT_SECRETS = (
    "UMPASS_KC_CLIENT_SECRET",
    "UMPASS_KC_PROVISIONER_SECRET",
    "UMPASS_BROKER_CLIENT_SECRET",
    "UMPASS_HELPDESK_CLIENT_SECRET",
)
# Optional: without it the realm has no read-only monitor client (the service's realm-health
# page and `umpass realm-check` need it).
MONITOR_SECRET = "UMPASS_KC_MONITOR_SECRET"  # noqa: S105 (a variable name)


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
    theme: bool = False  # make the realm's login theme ours
    with_demo: bool = False  # the demo downstream client (development and tests)
    # False: client secrets are left out of the comparison. The realm-health check plans
    # without the provisioner's secret (the service never holds it), so a secret alone
    # is not drift there; apply itself always compares them.
    compare_secrets: bool = True

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        *,
        fast_hash: bool = False,
        theme: bool = False,
        with_demo: bool = False,
    ) -> ApplyOptions:
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
        if env.get("UMPASS_ENV", "production").strip().lower() != "development":
            # The secrets apply gives the realm's clients: a placeholder would be public.
            for name in CLIENT_SECRETS:
                message = refusal(name, env[name])
                if message:
                    raise ApplyError(message)
            if env.get(MONITOR_SECRET):
                message = refusal(MONITOR_SECRET, env[MONITOR_SECRET])
                if message:
                    raise ApplyError(message)
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
                "MONITOR_CLIENT_SECRET": env.get(MONITOR_SECRET, ""),
                "SERVICE_BASE_URL": base_url,
                "SERVICE_BACKCHANNEL_URL": backchannel,
                # How long each Keycloak node keeps the list of current policy versions.
                "POLICY_GATE_CACHE_SECONDS": str(
                    _whole_seconds(env, "UMPASS_POLICY_GATE_CACHE_SECONDS", 30)
                ),
            },
            fast_hash=fast_hash,
            theme=theme,
            with_demo=with_demo,
        )

    def admin(self) -> KeycloakAdmin:
        return admin_api(self.url, MasterAdmin(self.admin_user, self.admin_password), timeout=30)


def load(name: str, variables: Mapping[str, str]) -> Any:
    """Read one JSON file, filling `{{NAME}}` placeholders (Keycloak owns `${...}`)."""
    text = (CONFIG_DIR / name).read_text(encoding="utf-8")

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in variables:
            raise ApplyError(f"keycloak_config/{name} uses {{{{{key}}}}}, which has no value")
        # Substitute inside JSON strings safely: json.dumps escapes quotes and backslashes.
        return json.dumps(variables[key])[1:-1]

    return json.loads(_PLACEHOLDER.sub(fill, text))


def _whole_seconds(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise ApplyError(f"{name}={raw!r} must be a whole number of seconds")
    return int(raw)
