"""The activation service's credential reaches students only.

Keycloak's fine-grained admin permissions v2 (26.2+, switched on per realm with
`adminPermissionsEnabled`) carry it. The service account holds no realm-wide user role, since a
legacy `view-users` or `manage-users` role turns the fine-grained evaluation off for whoever
holds it; it keeps `query-users` (searches, whose results Keycloak filters to the accounts it
may view) and `view-realm` (the password policy). One permission on the realm's
`admin-permissions` client lets it view and manage the members of the `umpass-students` group
and create accounts inside that group. Staff, help-desk and admin accounts are outside the
group, and the service cannot add anyone to it: that needs `manage-group-membership` on the
account, which it lacks.

The policy names the service account *user*: Keycloak filters user searches by a partial
evaluation that understands user policies, while a client policy lets single reads through but
leaves every search empty (found on 26.7).
"""

from __future__ import annotations

import json
from typing import Any, Protocol
from urllib.parse import quote

from keycloak import KeycloakAdmin

from keycloak_config.options import ApplyError
from keycloak_config.ownership import InstallRecord
from keycloak_config.paging import every_item
from keycloak_config.plan import Change
from provider.keycloak import STUDENTS_GROUP


class Realm(Protocol):
    """What these steps use of the applier or the uninstaller (both call them): named here so
    that this module needs neither, and the applier can import it."""

    realm: str
    admin: KeycloakAdmin
    record: InstallRecord
    dry_run: bool

    def _write(self, change: Change) -> bool: ...

    def _keep(self, subject: str, why: str = "") -> None: ...


class Applier(Realm, Protocol):
    """The applier's bookkeeping on top (keycloak_config.applier.RealmApplier)."""

    def _adopt(self, kind: str, name: str) -> None: ...

    def _save_record(self) -> None: ...


SERVICE_CLIENT = "umpass-activation"
POLICY = "umpass-activation service account"
PERMISSION = "umpass-activation manages students"
# view-members: read a student; manage-members: write one (attributes, password, lockout);
# manage-membership: create an account inside the group; view: the
# group itself, without which Keycloak cannot resolve it while it has no members (26.7: every
# create is refused until someone else adds a first member).
SCOPES = ["manage-members", "manage-membership", "view", "view-members"]
GROUP_KIND, PERMISSION_KIND = "group", "admin permission"  # install-record kinds
# On the group, never on an account (the service cannot write group attributes, and an
# undeclared user attribute is dropped): the activation provider's post-login flow lets
# through only accounts that inherit it (keycloak_config/flows/umpass-after-activation.json).
MEMBER_MARK, MEMBER = "umpass_students", "member"
# Install-record kind: the one-time join of already enrolled accounts is done.
JOINED_KIND = "students joined"
ACTIVATION_STATES = ("pending", "active")


def _authz(applier: Realm, client_uuid: str) -> str:
    return f"admin/realms/{applier.realm}/clients/{client_uuid}/authz/resource-server"


def _get(applier: Realm, path: str, **params: str) -> Any:
    response = applier.admin.connection.raw_get(path, **params)
    if response.status_code >= 300:
        raise ApplyError(f"Keycloak refused to read {path} (HTTP {response.status_code})")
    return response.json() if response.content else None


def _send(applier: Realm, method: str, path: str, body: Any | None = None) -> Any:
    conn = applier.admin.connection
    data = json.dumps(body) if body is not None else None
    response = {
        "POST": lambda: conn.raw_post(path, data=data),
        "PUT": lambda: conn.raw_put(path, data=data),
        "DELETE": lambda: conn.raw_delete(path),
    }[method]()
    if response.status_code >= 300:
        raise ApplyError(
            f"Keycloak refused {method} {path} (HTTP {response.status_code}): {response.text[:200]}"
        )
    return response.json() if response.content else None


def find_group(applier: Realm) -> dict[str, Any] | None:
    found = _get(
        applier,
        f"admin/realms/{applier.realm}/groups",
        search=STUDENTS_GROUP,
        exact="true",
        briefRepresentation="true",
    )
    return next((g for g in found or [] if g["name"] == STUDENTS_GROUP), None)


def find_by_name(applier: Realm, client_uuid: str, kind: str, name: str) -> Any:
    """The authorization policy or permission called `name`, or None."""
    found = _get(applier, f"{_authz(applier, client_uuid)}/{kind}", name=name, max="100")
    return next((p for p in found or [] if p["name"] == name), None)


def refuse_v1_permissions(applier: Realm) -> None:
    """A realm run by v1 fine-grained permissions (authorization on realm-management) would
    lose them when v2 is switched on: refused before anything is written."""
    clients = {c["clientId"]: c for c in applier.admin.get_clients()}
    management = clients.get("realm-management", {})
    if management.get("authorizationServicesEnabled"):
        raise ApplyError(
            f"realm {applier.realm} uses fine-grained admin permissions v1 (authorization is "
            "on for the realm-management client); the extension needs v2 "
            "(adminPermissionsEnabled), which replaces them: move those permissions to v2 "
            "first, then apply again"
        )


def apply_student_permissions(applier: Applier) -> None:
    """Group, policy and permission, then every account the extension knows joins the group.

    Runs before the service account's roles are narrowed, so a running service keeps
    working at every point of an upgrade.
    """
    group = _ensure_group(applier)
    clients = {c["clientId"]: c for c in applier.admin.get_clients()}
    if "admin-permissions" not in clients or SERVICE_CLIENT not in clients:
        # Only in a plan for a realm where v2 or the client is still to be switched on.
        applier._write(Change("add", f"admin policy {POLICY}", item="admin-policy", name=POLICY))
        applier._write(
            Change(
                "add",
                f"admin permission {PERMISSION}",
                new=", ".join(SCOPES),
                item="admin-permission",
                name=PERMISSION,
            )
        )
        _join_students(applier, group)
        return
    permissions = clients["admin-permissions"]["id"]
    account = applier.admin.get_client_service_account_user(clients[SERVICE_CLIENT]["id"])
    policy_id = _ensure_policy(applier, permissions, account["id"])
    if group is not None and policy_id is not None:
        _ensure_permission(applier, permissions, group["id"], policy_id)
    _join_students(applier, group)
    _flag_privileged_members(applier, group)


def _ensure_group(applier: Applier) -> dict[str, Any] | None:
    group = find_group(applier)
    if group is not None:
        if not applier.record.created_by_us(GROUP_KIND, STUDENTS_GROUP):
            raise ApplyError(
                f"realm {applier.realm} already has a group {STUDENTS_GROUP} that the "
                "extension did not create: the activation service would manage its members. "
                "Rename that group, then apply again"
            )
        full = _get(applier, f"admin/realms/{applier.realm}/groups/{group['id']}")
        attributes = full.get("attributes") or {}
        if attributes.get(MEMBER_MARK) != [MEMBER] and applier._write(
            Change(
                "change",
                f"group {STUDENTS_GROUP}",
                why=f"attribute {MEMBER_MARK}",
                item="group",
                name=STUDENTS_GROUP,
            )
        ):
            body = {**full, "attributes": {**attributes, MEMBER_MARK: [MEMBER]}}
            _send(applier, "PUT", f"admin/realms/{applier.realm}/groups/{group['id']}", body)
        return group
    if not applier._write(
        Change(
            "add",
            f"group {STUDENTS_GROUP}",
            why="the accounts the service may manage",
            item="group",
            name=STUDENTS_GROUP,
        )
    ):
        return None
    applier.record.note_created(GROUP_KIND, STUDENTS_GROUP)
    applier._save_record()
    body = {"name": STUDENTS_GROUP, "attributes": {MEMBER_MARK: [MEMBER]}}
    _send(applier, "POST", f"admin/realms/{applier.realm}/groups", body)
    return find_group(applier)


def _ensure_policy(applier: Applier, permissions: str, account_id: str) -> str | None:
    base = _authz(applier, permissions)
    desired = {
        "name": POLICY,
        "description": f"The service account of {SERVICE_CLIENT}, and no one else",
        "type": "user",
        "logic": "POSITIVE",
        "users": [account_id],
    }
    current = find_by_name(applier, permissions, "policy", POLICY)
    if current is None:
        if not applier._write(
            Change("add", f"admin policy {POLICY}", item="admin-policy", name=POLICY)
        ):
            return None
        applier.record.note_created(PERMISSION_KIND, POLICY)
        applier._save_record()
        return str(_send(applier, "POST", f"{base}/policy/user", desired)["id"])
    applier._adopt(PERMISSION_KIND, POLICY)
    users = _get(applier, f"{base}/policy/user/{current['id']}").get("users", [])
    if (set(users) != {account_id} or current.get("logic") != "POSITIVE") and applier._write(
        Change(
            "change",
            f"admin policy {POLICY}",
            why="names the service account only",
            item="admin-policy",
            name=POLICY,
        )
    ):
        _send(
            applier, "PUT", f"{base}/policy/user/{current['id']}", {**desired, "id": current["id"]}
        )
    return str(current["id"])


def _ensure_permission(applier: Applier, permissions: str, group_id: str, policy: str) -> None:
    base = _authz(applier, permissions)
    desired = {
        "name": PERMISSION,
        "description": f"{SERVICE_CLIENT} views and manages the members of {STUDENTS_GROUP}",
        "type": "scope",
        "resourceType": "Groups",
        "resources": [group_id],
        "scopes": SCOPES,
        "policies": [policy],
        "decisionStrategy": "UNANIMOUS",
        "logic": "POSITIVE",
    }
    current = find_by_name(applier, permissions, "permission", PERMISSION)
    if current is None:
        if applier._write(
            Change(
                "add",
                f"admin permission {PERMISSION}",
                new=", ".join(SCOPES),
                item="admin-permission",
                name=PERMISSION,
            )
        ):
            applier.record.note_created(PERMISSION_KIND, PERMISSION)
            applier._save_record()
            _send(applier, "POST", f"{base}/permission/scope", desired)
        return
    applier._adopt(PERMISSION_KIND, PERMISSION)
    pid = current["id"]
    resources = {r["name"] for r in _get(applier, f"{base}/policy/{pid}/resources") or []}
    scopes = sorted(s["name"] for s in _get(applier, f"{base}/policy/{pid}/scopes") or [])
    policies = {p["id"] for p in _get(applier, f"{base}/policy/{pid}/associatedPolicies") or []}
    if (
        group_id not in resources
        or len(resources) != 1
        or scopes != SCOPES
        or policies != {policy}
        or current.get("logic") != "POSITIVE"
    ) and applier._write(
        Change(
            "change",
            f"admin permission {PERMISSION}",
            ", ".join(scopes),
            ", ".join(SCOPES),
            item="admin-permission",
            name=PERMISSION,
        )
    ):
        _send(applier, "PUT", f"{base}/permission/scope/{pid}", {**desired, "id": pid})


def _join_students(applier: Applier, group: dict[str, Any] | None) -> None:
    """Accounts that carry an activation state (enrolled before the group existed) join it;
    membership is the only thing written to an account.

    Once per install, never again: an account an admin later takes out of the group (a
    student who became staff keeps `activation_state`) must stay out of the service's reach.
    """
    if applier.record.created_by_us(JOINED_KIND, STUDENTS_GROUP):
        return
    users = f"admin/realms/{applier.realm}/users"
    members: set[str] = set()
    if group is not None:
        members_path = f"admin/realms/{applier.realm}/groups/{group['id']}/members"
        members = {
            m["id"] for m in every_item(applier.admin, members_path, briefRepresentation="true")
        }
    missing = [
        u["id"]
        for state in ACTIVATION_STATES
        for u in every_item(
            applier.admin, users, q=f"activation_state:{state}", briefRepresentation="true"
        )
        if u["id"] not in members
    ]
    if missing and applier._write(
        Change(
            "add",
            f"{len(missing)} accounts with an activation state to group {STUDENTS_GROUP}",
            why="the service reaches only members",
            item="group-members",
            name=STUDENTS_GROUP,
            part=str(len(missing)),
        )
    ):
        assert group is not None  # noqa: S101 - written only when not planning
        for user_id in missing:
            _send(applier, "PUT", f"{users}/{user_id}/groups/{group['id']}")
    if not applier.dry_run:
        applier.record.note_created(JOINED_KIND, STUDENTS_GROUP)
        applier._save_record()


def _flag_privileged_members(applier: Applier, group: dict[str, Any] | None) -> None:
    """A member who also holds a realm role or an admin role is within the service's reach
    (it manages every member): named in the plan, so an admin can take them out of the
    group (e.g. a student who works at the help desk)."""
    if group is None:
        return
    realm = f"admin/realms/{applier.realm}"
    ordinary = {f"default-roles-{applier.realm}", "offline_access", "uma_authorization"}
    holders: dict[str, str] = {}  # id -> username
    paths = [
        f"{realm}/roles/{quote(r['name'], safe='')}/users"
        for r in applier.admin.get_realm_roles()
        if r["name"] not in ordinary
    ]
    clients = {c["clientId"]: c["id"] for c in applier.admin.get_clients()}
    management = f"{realm}/clients/{clients['realm-management']}/roles"
    paths += [
        f"{management}/{quote(r['name'], safe='')}/users" for r in _get(applier, management) or []
    ]
    for path in paths:
        for user in every_item(applier.admin, path, briefRepresentation="true"):
            holders[user["id"]] = user["username"]
    inside = sorted(
        name
        for user_id, name in holders.items()
        if any(
            g["id"] == group["id"]
            for g in _get(applier, f"{realm}/users/{user_id}/groups", briefRepresentation="true")
        )
    )
    if inside:
        applier._keep(
            f"members of {STUDENTS_GROUP} holding other roles: {', '.join(inside)}",
            "the activation service manages every member: take them out of the group, or "
            "their roles away",
        )


def remove_student_permissions(uninstaller: Realm) -> None:
    """Uninstall: the permission, its policy and the group go (accounts stay)."""
    record = uninstaller.record
    clients = {c["clientId"]: c for c in uninstaller.admin.get_clients()}
    if "admin-permissions" in clients:
        permissions = clients["admin-permissions"]["id"]
        for kind, name in (("permission", PERMISSION), ("policy", POLICY)):
            if name not in record.created.get(PERMISSION_KIND, []):
                continue
            current = find_by_name(uninstaller, permissions, kind, name)
            if current is not None and uninstaller._write(Change("remove", f"admin {kind} {name}")):
                _send(
                    uninstaller,
                    "DELETE",
                    f"{_authz(uninstaller, permissions)}/policy/{current['id']}",
                )
    if STUDENTS_GROUP in record.created.get(GROUP_KIND, []):
        group = find_group(uninstaller)
        if group is not None and uninstaller._write(
            Change("remove", f"group {STUDENTS_GROUP}", why="its members' accounts stay")
        ):
            _send(uninstaller, "DELETE", f"admin/realms/{uninstaller.realm}/groups/{group['id']}")
