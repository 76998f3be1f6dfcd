"""Accounts, clients and token requests for the per-grant tests (tests/integration/test_grants.py,
test_claim_scopes.py): plain HTTP against the real Keycloak, as a downstream service would."""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from typing import Any

import requests

from provider.keycloak import ACCEPTED_POLICIES
from provider.services import Services
from tests.support.policies import accepted_now
from tests.support.realm_changes import RealmChanges
from tests.support.students import enrol_student

PASSWORD = "meadow quartz lantern 2032"


@dataclass(frozen=True)
class Account:
    id: str
    username: str


def active_student(services: Services, prefix: str = "g") -> Account:
    """An activated student (password set, current policies accepted)."""
    who = enrol_student(services, prefix)
    user = services.keycloak.find_user(who.user_id)
    assert user is not None
    services.keycloak.activate(
        user.id, PASSWORD, attributes={ACCEPTED_POLICIES: accepted_now(services)}
    )
    return Account(user.id, who.user_id)


def add_client(changes: RealmChanges, **settings: Any) -> dict[str, Any]:
    """A client made for one test (deleted at its end); returns its representation."""
    rep = {
        "clientId": f"grant-test-{secrets.token_hex(3)}",
        "protocol": "openid-connect",
        "publicClient": True,
        "standardFlowEnabled": False,
        "implicitFlowEnabled": False,
        "directAccessGrantsEnabled": False,
        "serviceAccountsEnabled": False,
        **settings,
    }
    client_uuid = changes.admin.create_client(rep)
    changes.on_undo(lambda: changes.admin.delete_client(client_uuid))
    return {**rep, "id": client_uuid}


def oidc(server_url: str, realm: str) -> str:
    return f"{server_url}/realms/{realm}/protocol/openid-connect"


def password_grant(
    server_url: str, realm: str, client_id: str, username: str, **extra: str
) -> requests.Response:
    return requests.post(
        f"{oidc(server_url, realm)}/token",
        data={
            "grant_type": "password",
            "client_id": client_id,
            "username": username,
            "password": PASSWORD,
            "scope": "openid",
            **extra,
        },
        timeout=30,
    )


def refresh_grant(server_url: str, realm: str, client_id: str, token: str) -> requests.Response:
    return requests.post(
        f"{oidc(server_url, realm)}/token",
        data={"grant_type": "refresh_token", "client_id": client_id, "refresh_token": token},
        timeout=30,
    )


def claims(jwt: str) -> dict[str, Any]:
    """A token's payload, unverified: these tests read what Keycloak put in it."""
    payload = jwt.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def userinfo(server_url: str, realm: str, access_token: str) -> requests.Response:
    return requests.get(
        f"{oidc(server_url, realm)}/userinfo",
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=30,
    )
