"""LDAP user federation, for universities whose accounts live in a directory.

`apply_ldap_federation` brings one realm's LDAP user-storage component and its mappers
in line with `LdapFederationSettings`, idempotently, like the rest of keycloak_config:
it returns what it changed and a second run returns nothing. Users are looked up in the
directory on demand (a username search or a sign-in imports them); nothing is synced on
a schedule. WRITABLE: a password Keycloak sets (the activation's one write) goes to the
directory, through the LDAP Password Modify operation so the server hashes it.

Keycloak's own defaults that this changes: its "first name" mapper reads `cn` (the whole
name) and is pointed at `givenName`; the realm's password policy is enforced for
directory accounts too (`validatePasswordPolicy`, off by default), so the activation's
policy refusals stay the same for every student.

The bind credential reads back as `**********`, so it cannot be compared: instead
Keycloak is asked to bind with the stored one, and a credential that no longer works is
replaced. Before anything is written Keycloak must be able to bind with the new settings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from keycloak import KeycloakAdmin

from keycloak_config.options import ApplyError

STORAGE_TYPE = "org.keycloak.storage.UserStorageProvider"
MAPPER_TYPE = "org.keycloak.storage.ldap.mappers.LDAPStorageMapper"
ATTRIBUTE_MAPPER = "user-attribute-ldap-mapper"
STORED_SECRET = "**********"  # noqa: S105 - how Keycloak shows any stored secret


@dataclass(frozen=True)
class LdapFederationSettings:
    connection_url: str
    bind_dn: str
    bind_credential: str = field(repr=False)
    users_dn: str
    name: str = "ldap"
    user_object_classes: tuple[str, ...] = ("inetOrgPerson", "organizationalPerson")
    subtree: bool = False  # search below users_dn, not only its direct children
    # OpenLDAP and most directories hash a password set this way; plain attribute writes
    # are stored as given.
    password_modify_extended_op: bool = True
    connection_timeout_ms: int = 5000
    read_timeout_ms: int = 10000


def desired_component(settings: LdapFederationSettings) -> dict[str, list[str]]:
    """The component's config as Keycloak stores it (every value a list of strings)."""
    config = {
        "enabled": "true",
        "vendor": "other",
        "editMode": "WRITABLE",
        "connectionUrl": settings.connection_url,
        "authType": "simple",
        "bindDn": settings.bind_dn,
        "usersDn": settings.users_dn,
        "usernameLDAPAttribute": "uid",
        "rdnLDAPAttribute": "uid",
        "uuidLDAPAttribute": "entryUUID",
        "userObjectClasses": ", ".join(settings.user_object_classes),
        "searchScope": "2" if settings.subtree else "1",
        "importEnabled": "true",
        "syncRegistrations": "false",  # accounts are made in the directory, never by Keycloak
        "pagination": "true",
        "validatePasswordPolicy": "true",
        "trustEmail": "false",
        "usePasswordModifyExtendedOp": str(settings.password_modify_extended_op).lower(),
        "connectionTimeout": str(settings.connection_timeout_ms),
        "readTimeout": str(settings.read_timeout_ms),
    }
    return {k: [v] for k, v in config.items()}


def _attribute_mapper(
    model: str, ldap: str, *, mandatory: bool, always_read: bool
) -> dict[str, list[str]]:
    return {
        "user.model.attribute": [model],
        "ldap.attribute": [ldap],
        "read.only": ["false"],
        "always.read.value.from.ldap": [str(always_read).lower()],
        "is.mandatory.in.ldap": [str(mandatory).lower()],
    }


# By the names Keycloak gives its default mappers, so these replace them, not sit beside.
MAPPERS: dict[str, dict[str, list[str]]] = {
    "username": _attribute_mapper("username", "uid", mandatory=True, always_read=False),
    "first name": _attribute_mapper("firstName", "givenName", mandatory=True, always_read=True),
    "last name": _attribute_mapper("lastName", "sn", mandatory=True, always_read=True),
    "email": _attribute_mapper("email", "mail", mandatory=False, always_read=False),
}


def apply_ldap_federation(
    admin: KeycloakAdmin, realm: str, settings: LdapFederationSettings
) -> list[str]:
    """Create or update the realm's LDAP federation `settings.name`; list what changed."""
    api = _Components(admin, realm)
    desired = desired_component(settings)
    _check_bind(api, settings)
    changes: list[str] = []
    current = api.find(api.realm_id, STORAGE_TYPE, settings.name)
    if current is None:
        config = {**desired, "bindCredential": [settings.bind_credential]}
        component_id = api.create(
            {
                "name": settings.name,
                "providerId": "ldap",
                "providerType": STORAGE_TYPE,
                "parentId": api.realm_id,
                "config": config,
            }
        )
        changes.append(f"create LDAP federation {settings.name}")
    else:
        component_id = current["id"]
        differing = sorted(k for k, v in desired.items() if current["config"].get(k) != v)
        if not _stored_bind_works(api, component_id, settings):
            differing.append("bindCredential")
        if differing:
            # Always the real credential: Keycloak keeps the stored one for `**********`.
            config = {
                **current["config"],
                **desired,
                "bindCredential": [settings.bind_credential],
            }
            api.update({**current, "config": config})
            changes.append(f"LDAP federation {settings.name}: {', '.join(differing)}")
    for name, mapper_config in MAPPERS.items():
        mapper = api.find(component_id, MAPPER_TYPE, name)
        if mapper is None:
            api.create(
                {
                    "name": name,
                    "providerId": ATTRIBUTE_MAPPER,
                    "providerType": MAPPER_TYPE,
                    "parentId": component_id,
                    "config": mapper_config,
                }
            )
            changes.append(f"create LDAP mapper {name}")
        elif mapper["providerId"] != ATTRIBUTE_MAPPER:
            # A mapper cannot change its kind in place: replace it whole.
            api.delete(mapper["id"])
            kept = {k: v for k, v in mapper.items() if k != "id"}
            api.create({**kept, "providerId": ATTRIBUTE_MAPPER, "config": mapper_config})
            changes.append(f"LDAP mapper {name}")
        elif any(mapper["config"].get(k) != v for k, v in mapper_config.items()):
            api.update({**mapper, "config": {**mapper["config"], **mapper_config}})
            changes.append(f"LDAP mapper {name}")
    return changes


def remove_ldap_federation(admin: KeycloakAdmin, realm: str, name: str = "ldap") -> bool:
    """Delete the realm's LDAP federation `name` with its mappers and the users it
    imported; True when there was one."""
    api = _Components(admin, realm)
    current = api.find(api.realm_id, STORAGE_TYPE, name)
    if current is None:
        return False
    api.delete(current["id"])
    return True


def _check_bind(api: _Components, settings: LdapFederationSettings) -> None:
    error = api.test_bind(
        {
            "connectionUrl": settings.connection_url,
            "bindDn": settings.bind_dn,
            "bindCredential": settings.bind_credential,
        }
    )
    if error:
        raise ApplyError(
            f"Keycloak cannot bind to the LDAP server at {settings.connection_url} as "
            f"{settings.bind_dn} ({error}): check the URL, the bind DN and its password"
        )


def _stored_bind_works(
    api: _Components, component_id: str, settings: LdapFederationSettings
) -> bool:
    return not api.test_bind(
        {
            "connectionUrl": settings.connection_url,
            "bindDn": settings.bind_dn,
            "bindCredential": STORED_SECRET,  # with componentId: the stored credential
            "componentId": component_id,
        }
    )


class _Components:
    """The few component calls needed, on an explicit realm (python-keycloak's typed ones
    follow the admin's current realm)."""

    def __init__(self, admin: KeycloakAdmin, realm: str) -> None:
        self.conn = admin.connection
        self.base = f"admin/realms/{realm}"
        response = self.conn.raw_get(self.base)
        self.realm_id: str = self._json(response, f"read realm {realm}")["id"]

    @staticmethod
    def _json(response: Any, what: str) -> Any:
        if response.status_code >= 300:
            raise ApplyError(
                f"Keycloak refused to {what} (HTTP {response.status_code}): {response.text[:300]}"
            )
        return response.json() if response.content else None

    def find(self, parent: str, kind: str, name: str) -> dict[str, Any] | None:
        response = self.conn.raw_get(f"{self.base}/components", parent=parent, type=kind, name=name)
        found = self._json(response, f"list components named {name}")
        return next((c for c in found if c.get("name") == name), None)

    def create(self, component: Mapping[str, Any]) -> str:
        response = self.conn.raw_post(f"{self.base}/components", data=json.dumps(component))
        self._json(response, f"create component {component['name']}")
        return str(response.headers["Location"]).rstrip("/").rsplit("/", 1)[1]

    def update(self, component: Mapping[str, Any]) -> None:
        response = self.conn.raw_put(
            f"{self.base}/components/{component['id']}", data=json.dumps(component)
        )
        self._json(response, f"update component {component['name']}")

    def delete(self, component_id: str) -> None:
        response = self.conn.raw_delete(f"{self.base}/components/{component_id}")
        self._json(response, "delete a component")

    def test_bind(self, connection: Mapping[str, str]) -> str:
        """ "" when Keycloak could bind, else its reason (e.g. AuthenticationFailure)."""
        body = {"action": "testAuthentication", "authType": "simple", **connection}
        response = self.conn.raw_post(f"{self.base}/testLDAPConnection", data=json.dumps(body))
        if response.status_code < 300:
            return ""
        if response.status_code != 400:
            self._json(response, "test the LDAP connection")
        try:
            return str(response.json().get("errorMessage") or "refused")
        except ValueError:
            return "refused"
