"""Changes a test makes to a realm other tests share, each recorded with its undo.

The `realm_changes` fixture (tests/conftest.py) undoes them in its teardown, newest first,
whether the test passed or failed: a test that stops half-way must not leave the next
one a realm with a loosened setting, an extra role, a group holding realm-admin or a staff
account with the help-desk role. An undo that has already run (a test may put a setting
back itself, in the middle) runs no second time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from keycloak import KeycloakAdmin

from tests.support.staff import Staff, create_staff


class RealmChanges:
    def __init__(self, admin: KeycloakAdmin, realm: str) -> None:
        self.admin = admin  # an admin working in `realm`
        self.realm = realm
        self._undo: list[Callable[[], None]] = []

    # -- recording -------------------------------------------------------------------

    def on_undo(self, undo: Callable[[], Any]) -> Callable[[], None]:
        """Register `undo` for the teardown; returns a function that runs it now (once)."""
        done = False

        def once() -> None:
            nonlocal done
            if not done:
                done = True
                undo()

        self._undo.append(once)
        return once

    def undo_all(self) -> None:
        """Every undo, newest first; each is tried even when one before it failed."""
        failures: list[BaseException] = []
        while self._undo:
            try:
                self._undo.pop()()
            except Exception as exc:  # reported below, once the rest have run
                failures.append(exc)
        if failures:
            raise RuntimeError(f"{len(failures)} realm change(s) not undone") from failures[0]

    # -- changes ---------------------------------------------------------------------

    def update_realm(self, changes: dict[str, Any]) -> Callable[[], None]:
        """Change realm settings; undone by putting the previous values back."""
        before = self.admin.get_realm(self.realm)
        previous = {key: before.get(key) for key in changes}
        undo = self.on_undo(lambda: self.admin.update_realm(self.realm, previous))
        self.admin.update_realm(self.realm, changes)
        return undo

    @contextmanager
    def realm_settings(self, changes: dict[str, Any]) -> Iterator[None]:
        """Realm settings changed for the `with` block only (and at worst until teardown)."""
        undo = self.update_realm(changes)
        try:
            yield
        finally:
            undo()

    def grant_client_roles(self, user_id: str, client_id: str, names: list[str]) -> None:
        """Give a user roles of a client (by the client's id); undone unless taken away."""
        roles = [self.admin.get_client_role(client_id, name) for name in names]

        def revoke() -> None:
            held = {r["name"] for r in self.admin.get_client_roles_of_user(user_id, client_id)}
            still = [r for r in roles if r["name"] in held]
            if still:
                self.admin.delete_client_roles_of_user(user_id, client_id, still)

        self.on_undo(revoke)
        self.admin.assign_client_role(user_id, client_id, roles)

    def add_group(self, name: str) -> str:
        """A new group (its id); undone by deleting it with its roles and members."""
        group_id = self.admin.create_group({"name": name})
        self.on_undo(lambda: self.admin.delete_group(group_id))
        return str(group_id)

    def add_realm_role(self, name: str) -> None:
        """A new realm role; undone by deleting it, which takes it from everyone holding it."""
        self.admin.create_realm_role({"name": name})
        self.on_undo(lambda: self.admin.delete_realm_role(name))

    def add_staff(self, *roles: str, username: str | None = None) -> Staff:
        """A staff account holding `roles` (tests.support.staff); undone by deleting it."""
        staff = create_staff(self.admin, username=username)
        self.on_undo(lambda: self.admin.delete_user(staff.id))
        if roles:
            self.admin.assign_realm_roles(staff.id, [self.admin.get_realm_role(r) for r in roles])
        return staff


def shared_state(admin: KeycloakAdmin, realm: str) -> dict[str, Any]:
    """What a test may change only for a while, in a form compared by `left_changed`.

    The realm's settings (its flow bindings aside: an apply replaces a hand-edited flow
    under a new name), its groups and the roles each carries (not their members: every
    enrolled student joins the students group), its realm roles and who holds each (the
    default role aside: every new account does), and who holds each role of
    realm-management (the admin API's own roles).
    """
    settings = admin.get_realm(realm)
    default_role = (settings.get("defaultRole") or {}).get("name")
    settings = {
        k: v for k, v in settings.items() if not (k.endswith("Flow") and isinstance(v, str))
    }
    groups = {}
    for group in admin.get_groups({"briefRepresentation": "false"}):
        mappings = admin.connection.raw_get(
            f"admin/realms/{realm}/groups/{group['id']}/role-mappings"
        ).json()
        groups[group["name"]] = {
            "realm": sorted(r["name"] for r in mappings.get("realmMappings", [])),
            "clients": {
                client: sorted(r["name"] for r in held["mappings"])
                for client, held in (mappings.get("clientMappings") or {}).items()
            },
        }
    roles = {
        r["name"]: sorted(u["username"] for u in admin.get_realm_role_members(r["name"]))
        for r in admin.get_realm_roles()
        if r["name"] != default_role
    }
    management = admin.get_client_id("realm-management")
    admin_roles = {
        r["name"]: sorted(
            u["username"] for u in admin.get_client_role_members(management, r["name"])
        )
        for r in admin.get_client_roles(management)
    }
    return {"settings": settings, "groups": groups, "roles": roles, "adminRoles": admin_roles}


def left_changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """One line per thing `after` has that `before` had not, or had otherwise."""
    lines = []
    for section in before.keys() | after.keys():
        was, now = before.get(section, {}), after.get(section, {})
        for key in sorted(was.keys() | now.keys()):
            if was.get(key) != now.get(key):
                lines.append(f"{section}.{key}: {was.get(key)!r} → {now.get(key)!r}")
    return sorted(lines)
