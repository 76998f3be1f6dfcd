"""What the extension created or changed in a realm, kept in the realm itself.

One realm attribute (`umpass.install`) holds a JSON record: the objects the extension
created, and for every setting or binding it changed, the value before the first change
and the value it set. `--uninstall` reads it to remove what was created and to restore
what was changed, but only where the realm still holds what the extension set (a value
an admin changed since is theirs and stays). The record is written before the change it
describes, so an interrupted apply leaves nothing unaccounted for. It holds no secrets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from keycloak import KeycloakAdmin

from keycloak_config.options import ApplyError

ATTRIBUTE = "umpass.install"
VERSION = 1


@dataclass
class InstallRecord:
    created: dict[str, list[str]] = field(default_factory=dict)  # kind -> names
    previous: dict[str, Any] = field(default_factory=dict)  # key -> value before us
    applied: dict[str, Any] = field(default_factory=dict)  # key -> value we set

    @classmethod
    def load(cls, admin: KeycloakAdmin, realm: str) -> InstallRecord:
        attributes = admin.get_realm(realm).get("attributes") or {}
        raw = attributes.get(ATTRIBUTE)
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("version") != VERSION:
                raise ValueError("not a record of this version")
        except ValueError:
            raise ApplyError(
                f"the realm attribute {ATTRIBUTE} of realm {realm} is not an install record "
                "this version wrote: compare it with an older export of the realm before "
                "removing it"
            ) from None
        return cls(data.get("created", {}), data.get("previous", {}), data.get("applied", {}))

    def save(self, admin: KeycloakAdmin, realm: str) -> None:
        data = {
            "version": VERSION,
            "created": self.created,
            "previous": self.previous,
            "applied": self.applied,
        }
        _put_attribute(admin, realm, json.dumps(data, sort_keys=True))

    @staticmethod
    def erase(admin: KeycloakAdmin, realm: str) -> None:
        _put_attribute(admin, realm, None)

    def is_empty(self) -> bool:
        return not (self.created or self.previous)

    def created_by_us(self, kind: str, name: str) -> bool:
        return name in self.created.get(kind, [])

    def note_created(self, kind: str, name: str) -> None:
        names = self.created.setdefault(kind, [])
        if name not in names:
            names.append(name)

    def forget_created(self, kind: str, name: str) -> None:
        if name in self.created.get(kind, []):
            self.created[kind].remove(name)
            if not self.created[kind]:
                del self.created[kind]

    def note_changed(self, key: str, old: Any, new: Any) -> None:
        """Keep the value from before the first change; always the latest value set."""
        self.previous.setdefault(key, old)
        self.applied[key] = new

    def forget_changed(self, key: str) -> None:
        self.previous.pop(key, None)
        self.applied.pop(key, None)


def _put_attribute(admin: KeycloakAdmin, realm: str, value: str | None) -> None:
    """Write our attribute with every other one as it is: Keycloak drops some realm
    attributes (such as `realmReusableOtpCode`) that a partial map leaves out."""
    attributes = dict(admin.get_realm(realm).get("attributes") or {})
    admin.update_realm(realm, {"attributes": {**attributes, ATTRIBUTE: value}})
