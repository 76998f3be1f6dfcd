"""Arranging a Keycloak account for a test straight through the admin API, not through the
service's gateway: what a test sets up must not rest on the code it tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from keycloak import KeycloakAdmin


def set_attributes(
    admin: KeycloakAdmin, user_id: str, changes: Mapping[str, Sequence[str] | None]
) -> None:
    """Set (None: remove) the named attributes and keep every other one. Keycloak's user PUT
    replaces the whole attribute map, and the user profile wants the names and email back."""
    rep = admin.get_user(user_id)
    attributes = dict(rep.get("attributes", {}))
    for name, values in changes.items():
        if values is None:
            attributes.pop(name, None)
        else:
            attributes[name] = list(values)
    admin.update_user(
        user_id,
        {
            "attributes": attributes,
            **{k: rep[k] for k in ("firstName", "lastName", "email") if k in rep},
        },
    )
