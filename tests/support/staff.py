"""A staff account in the test realm: no activation_state (not a student), a password,
and the realm roles asked for."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from keycloak import KeycloakAdmin

STAFF_PASSWORD = "staff harbour lantern 2033"


@dataclass(frozen=True)
class Staff:
    username: str
    id: str


def create_staff(admin: KeycloakAdmin, *roles: str, username: str | None = None) -> Staff:
    username = username or f"staff{secrets.token_hex(3)}"
    user_id = admin.create_user(
        {
            "username": username,
            "enabled": True,
            "email": f"{username}@example.edu",
            "firstName": "Help",
            "lastName": "Desk",
            "credentials": [{"type": "password", "value": STAFF_PASSWORD, "temporary": False}],
        }
    )
    if roles:
        admin.assign_realm_roles(user_id, [admin.get_realm_role(r) for r in roles])
    return Staff(username, user_id)
