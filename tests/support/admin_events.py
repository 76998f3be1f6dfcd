"""Every write to a user, as Keycloak itself records it (admin events), not as the service
says it made them.

Keycloak stores an admin event in the transaction of the write it records, before it
answers. A user PUT is an UPDATE on `users/{id}` (its recorded representation leaves the
password out but keeps the attributes); a password set on its own is an ACTION on
`users/{id}/reset-password`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from keycloak import KeycloakAdmin

from provider.keycloak import ACTIVATION_STATE


@dataclass(frozen=True)
class UserWrite:
    time: int
    kind: str  # "update" (a user PUT) or "set-password"
    attributes: dict[str, list[str]]  # of an update, as written

    @property
    def state(self) -> str | None:
        return (self.attributes.get(ACTIVATION_STATE) or [None])[0]


class KeycloakWrites:
    def __init__(self, admin: KeycloakAdmin, realm: str) -> None:
        self._admin = admin
        self._realm = realm

    def of(self, keycloak_id: str) -> list[UserWrite]:
        """The writes to this user, oldest first."""
        events: list[dict[str, Any]] = self._admin.connection.raw_get(
            f"admin/realms/{self._realm}/admin-events",
            resourcePath=f"users/{keycloak_id}*",
            max=1000,
        ).json()
        writes = []
        for event in events:
            path, operation = event["resourcePath"], event["operationType"]
            if path == f"users/{keycloak_id}" and operation == "UPDATE":
                rep = json.loads(event.get("representation") or "{}")
                writes.append(UserWrite(event["time"], "update", rep.get("attributes") or {}))
            elif path == f"users/{keycloak_id}/reset-password" and operation == "ACTION":
                writes.append(UserWrite(event["time"], "set-password", {}))
        return sorted(writes, key=lambda w: w.time)

    def activations(self, keycloak_id: str) -> list[UserWrite]:
        """The user PUTs that wrote the account active. In the activation flow only the
        gateway's activation write does (nothing else writes an active account there), and
        it carries the password: each is one credential write."""
        return [w for w in self.of(keycloak_id) if w.kind == "update" and w.state == "active"]

    def passwords_set(self, keycloak_id: str) -> list[UserWrite]:
        """Passwords set on their own (after a lost answer or a crash after the write)."""
        return [w for w in self.of(keycloak_id) if w.kind == "set-password"]

    def credential_writes(self, keycloak_id: str) -> int:
        return len(self.activations(keycloak_id)) + len(self.passwords_set(keycloak_id))


@contextmanager
def recording(admin: KeycloakAdmin, realm: str) -> Iterator[KeycloakWrites]:
    """Admin events with their representations on, for as long as the block runs; the
    realm's own settings come back afterwards, whatever happened inside."""
    keys = ("adminEventsEnabled", "adminEventsDetailsEnabled")
    before = admin.get_realm(realm)
    admin.update_realm(realm, dict.fromkeys(keys, True))
    try:
        yield KeycloakWrites(admin, realm)
    finally:
        admin.update_realm(realm, {key: bool(before.get(key)) for key in keys})
