"""The account's activation state in every client's tokens: the `umpass` client scopes.

Downstream services must be able to check `activation_state` themselves, whatever client
they use, so the claim cannot live on one client (the demo's). One client scope per
protocol (keycloak_config/client-scopes.json) carries the mappers; it is a realm default
scope, so every client made later gets it, and a default scope of every client of that
protocol the realm has now. The realm's own scopes, and the other default scopes of its
clients, stay as they are. Uninstall deletes the scopes, which takes them from every client.
"""

from __future__ import annotations

import json
from typing import Any

from keycloak_config.merge import _covers
from keycloak_config.options import ApplyError, load
from keycloak_config.plan import Action, Change
from keycloak_config.student_permissions import Applier, Realm

SCOPE_KIND = "client scope"  # install-record kind
CONFIG = "client-scopes.json"
PERMISSIONS_CLIENT = "admin-permissions"
# A client without a protocol is an OpenID Connect one (Keycloak's default).
_OIDC = "openid-connect"


def wanted_scopes(variables: dict[str, str]) -> list[dict[str, Any]]:
    return list(load(CONFIG, variables))


def _base(applier: Realm) -> str:
    return f"admin/realms/{applier.realm}"


def _read(applier: Realm, path: str) -> Any:
    response = applier.admin.connection.raw_get(f"{_base(applier)}/{path}")
    if response.status_code >= 300:
        raise ApplyError(f"Keycloak refused to read {path} (HTTP {response.status_code})")
    return response.json()


def _send(applier: Realm, method: str, path: str, body: Any | None = None) -> Any:
    call = {
        "POST": applier.admin.connection.raw_post,
        "PUT": applier.admin.connection.raw_put,
        "DELETE": applier.admin.connection.raw_delete,
    }[method]
    response = call(f"{_base(applier)}/{path}", data=json.dumps(body) if body is not None else "")
    if response.status_code >= 300 and response.status_code != 409:
        raise ApplyError(f"Keycloak refused {method} {path}: {response.text[:200]}")
    return response


def apply_claim_scopes(applier: Applier, variables: dict[str, str]) -> None:
    scopes = {s["name"]: s for s in _read(applier, "client-scopes")}
    realm_defaults = {s["name"] for s in _read(applier, "default-default-client-scopes")}
    clients = applier.admin.get_clients()
    for desired in wanted_scopes(variables):
        name = desired["name"]
        current = scopes.get(name)
        if current is None:
            if applier._write(
                Change(
                    "add",
                    f"client scope {name}",
                    why=desired["description"],
                    item="claim-scope",
                    name=name,
                )
            ):
                applier.record.note_created(SCOPE_KIND, name)
                applier._save_record()
                _send(applier, "POST", "client-scopes", desired)  # with its mappers
                current = _by_name(applier, name)
        else:
            _refuse_theirs(applier, name)
            applier._adopt(SCOPE_KIND, name)
            fields = {k: v for k, v in desired.items() if k != "protocolMappers"}
            if not _covers(current, fields) and applier._write(
                Change("change", f"client scope {name}", item="claim-scope", name=name)
            ):
                _send(
                    applier,
                    "PUT",
                    f"client-scopes/{current['id']}",
                    {**fields, "id": current["id"]},
                )
            _ensure_mappers(applier, name, current["id"], desired["protocolMappers"])
        scope_id = current["id"] if current else None
        if name not in realm_defaults and applier._write(
            Change(
                "add",
                f"client scope {name} as a realm default scope",
                why="every client made later gets it",
                item="realm-default-scope",
                name=name,
            )
        ):
            _send(applier, "PUT", f"default-default-client-scopes/{scope_id}")
        for client in clients:
            if not gets_tokens(client, desired["protocol"]):
                continue
            if name in (client.get("defaultClientScopes") or []):
                continue
            if applier._write(
                Change(
                    "add",
                    f"client scope {name} as a default scope of {client['clientId']}",
                    why="its tokens say whether the account is active",
                    item="default-scope",
                    name=client["clientId"],
                    part=name,
                )
            ):
                _send(applier, "PUT", f"clients/{client['id']}/default-client-scopes/{scope_id}")


def gets_tokens(client: dict[str, Any], protocol: str) -> bool:
    """A client of `protocol` that can be issued tokens. Not a bearer-only one (Keycloak's
    realm-management and broker, whose scopes it refuses to change), nor the holder of
    the fine-grained admin permissions, which Keycloak makes when apply switches them on
    (a plan made before could not name it)."""
    return (
        (client.get("protocol") or _OIDC) == protocol
        and not client.get("bearerOnly")
        and client["clientId"] != PERMISSIONS_CLIENT
    )


def _by_name(applier: Realm, name: str) -> dict[str, Any]:
    return next(s for s in _read(applier, "client-scopes") if s["name"] == name)


def _refuse_theirs(applier: Applier, name: str) -> None:
    """A scope of that name the realm made itself is the university's: never taken over."""
    if applier.record.created_by_us(SCOPE_KIND, name):
        return
    raise ApplyError(
        f"the realm already has a client scope named {name!r}, not made by the extension: "
        "rename it (the extension's claims need the name), then run apply again"
    )


def _ensure_mappers(
    applier: Applier, name: str, scope_id: str, wanted: list[dict[str, Any]]
) -> None:
    """The scope's mappers as keycloak_config/ has them; mappers an admin added stay."""
    path = f"client-scopes/{scope_id}/protocol-mappers/models"
    existing = {m["name"]: m for m in _read(applier, path)}
    for mapper in wanted:
        current = existing.get(mapper["name"])
        if current is None:
            if applier._write(_mapper_change("add", name, mapper["name"])):
                _send(applier, "POST", path, mapper)
        elif not _covers(current, mapper) and applier._write(
            _mapper_change("change", name, mapper["name"])
        ):
            _send(applier, "PUT", f"{path}/{current['id']}", {**mapper, "id": current["id"]})


def _mapper_change(action: Action, scope: str, mapper: str) -> Change:
    return Change(
        action,
        f"mapper {mapper} of client scope {scope}",
        item="scope-mapper",
        name=scope,
        part=mapper,
    )


def remove_claim_scopes(uninstaller: Realm, allowed: set[str]) -> None:
    """Delete the scopes the extension made (only names keycloak_config/ defines): first
    from the realm's defaults, since Keycloak refuses to delete a scope in use there."""
    scopes = {s["name"]: s for s in _read(uninstaller, "client-scopes")}
    for name in uninstaller.record.created.get(SCOPE_KIND, []):
        current = scopes.get(name)
        if name not in allowed or current is None:
            continue
        if not uninstaller._write(
            Change("remove", f"client scope {name}", why="and from every client")
        ):
            continue
        for kind in ("default-default-client-scopes", "default-optional-client-scopes"):
            if any(s["name"] == name for s in _read(uninstaller, kind)):
                _send(uninstaller, "DELETE", f"{kind}/{current['id']}")
        _send(uninstaller, "DELETE", f"client-scopes/{current['id']}")
