"""What a recovery left behind, read from where it happened rather than from the service:
Keycloak's own record of each write (admin events), its sessions and locks, a real
sign-in, the inbox, and the audit.

Keycloak records an admin event in the transaction of the write, before it answers (the
`keycloak_writes` fixture switches them on): a password set is an ACTION on
`users/{id}/reset-password`, a sign-out everywhere an ACTION on `users/{id}/logout` (with
or without sessions to end), a brute-force lock lifted a DELETE on
`attack-detection/brute-force/users/{id}`, recorded only when there was a lock (or failed
sign-ins) to lift: lifting none leaves no event. A write Keycloak refused, or never saw,
leaves no event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests
from keycloak import KeycloakAdmin
from sqlalchemy import func, select

from provider.services import Services
from provider.storage.models import AuditEvent, OutboxEvent
from tests.support.flow_client import StudentDetails
from tests.support.keycloak_login import sign_in


@dataclass(frozen=True)
class Locked:
    """An active student with a session open, then locked out by wrong passwords."""

    who: StudentDetails
    account: str  # the Keycloak id
    refresh: str  # the open session's refresh token


@dataclass(frozen=True)
class RecoveryWrites:
    passwords_set: int
    sign_outs: int
    locks_lifted: int


NONE_WRITTEN = RecoveryWrites(0, 0, 0)


def recovery_writes(admin: KeycloakAdmin, keycloak_id: str) -> RecoveryWrites:
    """The recovery's writes to this account, as Keycloak recorded them."""
    realm = admin.get_current_realm()

    def events(path: str) -> list[dict[str, Any]]:
        return admin.connection.raw_get(
            f"admin/realms/{realm}/admin-events", resourcePath=path, max=1000
        ).json()

    user = events(f"users/{keycloak_id}/*")
    lifted = events(f"attack-detection/brute-force/users/{keycloak_id}")

    def count(found: list[dict[str, Any]], path: str, operation: str) -> int:
        return sum(
            1 for e in found if e.get("resourcePath") == path and e["operationType"] == operation
        )

    return RecoveryWrites(
        passwords_set=count(user, f"users/{keycloak_id}/reset-password", "ACTION"),
        sign_outs=count(user, f"users/{keycloak_id}/logout", "ACTION"),
        locks_lifted=count(lifted, f"attack-detection/brute-force/users/{keycloak_id}", "DELETE"),
    )


def keycloak_id(admin: KeycloakAdmin, user_id: str) -> str:
    [user] = admin.get_users({"username": user_id, "exact": True})
    return str(user["id"])


def signs_in(services: Services, user_id: str, password: str) -> bool:
    """A real sign-in at Keycloak's login page (the demo client)."""
    kc = services.settings.keycloak
    return sign_in(kc.url, kc.realm, user_id, password).ok


def open_session(services: Services, user_id: str, password: str) -> str:
    """Sign in at Keycloak for real; returns the session's refresh token."""
    kc = services.settings.keycloak
    result = sign_in(kc.url, kc.realm, user_id, password)
    assert result.ok and result.tokens, "the sign-in that opens a session failed"
    return str(result.tokens["refresh_token"])


def session_alive(services: Services, refresh_token: str) -> bool:
    """Does Keycloak still honour the session's refresh token?"""
    kc = services.settings.keycloak
    answer = requests.post(
        f"{kc.url}/realms/{kc.realm}/protocol/openid-connect/token",
        data={
            "grant_type": "refresh_token",
            "client_id": "umpass-demo",
            "refresh_token": refresh_token,
        },
        timeout=30,
    )
    return answer.status_code == 200


def lock_at_keycloak(services: Services, user_id: str, keycloak_id: str) -> None:
    """Trip Keycloak's brute-force protection with wrong passwords at the login page."""
    for _ in range(10):
        assert not signs_in(services, user_id, "not the password at all 0000")
        if services.keycloak.lockout_status(keycloak_id).get("disabled"):
            return
    raise AssertionError("Keycloak never locked the account")


def locked_at_keycloak(services: Services, keycloak_id: str) -> bool:
    return bool(services.keycloak.lockout_status(keycloak_id).get("disabled"))


def audited(services: Services, user_id: str, action: str) -> int:
    with services.sessions() as db:
        return int(
            db.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.subject == user_id, AuditEvent.action == action)
            )
            or 0
        )


def downstream_events(services: Services, user_id: str, event_type: str) -> int:
    """Events of `event_type` in the outbox for `user_id` (provider/events)."""
    with services.sessions() as db:
        return int(
            db.scalar(
                select(func.count())
                .select_from(OutboxEvent)
                .where(OutboxEvent.user_id == user_id, OutboxEvent.type == event_type)
            )
            or 0
        )
