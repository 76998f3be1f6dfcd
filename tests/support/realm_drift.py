"""Drift an IT admin makes by hand in the admin console, made through the admin API: the
browser flow bound back to Keycloak's own `browser`, duplicate emails on, and
`activation_state` user-viewable and user-editable in the user profile. Undone by the
`realm_changes` teardown, the install record included (apply records what it repairs)."""

from __future__ import annotations

import json

from keycloak import KeycloakAdmin

from tests.support.realm_changes import RealmChanges

HAND_MADE = {"browser-flow", "duplicate-emails-off", "activation-state-admin-only"}


def make_hand_drift(admin: KeycloakAdmin, realm: str, changes: RealmChanges) -> None:
    record = (admin.get_realm(realm).get("attributes") or {}).get("umpass.install")

    def put_record_back() -> None:
        attributes = admin.get_realm(realm).get("attributes") or {}
        admin.update_realm(realm, {"attributes": {**attributes, "umpass.install": record}})

    changes.on_undo(put_record_back)
    path = f"admin/realms/{realm}/users/profile"
    before = admin.connection.raw_get(path).json()
    changes.on_undo(lambda: admin.connection.raw_put(path, data=json.dumps(before)))
    # Keycloak switches sign-in by email off with duplicate emails on: named here, so that
    # the undo puts it back too.
    changes.update_realm(
        {"browserFlow": "browser", "duplicateEmailsAllowed": True, "loginWithEmailAllowed": False}
    )
    loose = json.loads(json.dumps(before))
    for attribute in loose["attributes"]:
        if attribute["name"] == "activation_state":
            attribute["permissions"] = {"view": ["admin", "user"], "edit": ["admin", "user"]}
    response = admin.connection.raw_put(path, data=json.dumps(loose))
    assert response.status_code < 300, response.text
