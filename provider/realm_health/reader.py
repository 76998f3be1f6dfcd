"""The read-only connection the realm-health check reads the realm through.

`umpass-realm-monitor` holds view roles only (keycloak_config/service-accounts.json); the
service's own `umpass-activation` credential stays as narrow as it was, so a bug here can
never write to the realm.
"""

from __future__ import annotations

from keycloak import KeycloakAdmin

from provider.config import Settings
from provider.keycloak_connection import ServiceAccount, admin_api

MONITOR_CLIENT = "umpass-realm-monitor"


def monitor_api(settings: Settings) -> KeycloakAdmin:
    """A fresh connection per check: a check is rare and python-keycloak's connection is
    not thread-safe, so none is shared between requests."""
    kc = settings.keycloak
    account = ServiceAccount(kc.realm, MONITOR_CLIENT, settings.realm_health.monitor_secret)
    admin = admin_api(kc.url, account, timeout=kc.timeout_seconds)
    admin.change_current_realm(kc.realm)
    return admin
