"""Authentication flows as code: build, compare and swap without a gap.

A flow in `keycloak_config/flows/*.json` is a tree of executions (an `authenticator`
or a sub-`flow`, each with a `requirement` and an optional `config`). Keycloak cannot
edit a flow that is in use in one step, and a half-edited browser flow could let a
pending account through, so a changed flow is never edited in place: a complete new copy
is built under a fresh alias (`<alias> <tag>`), checked, then bound, and only then are
the older copies deleted. Logins in between use either the old or the new flow, whole.
"""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote

from keycloak import KeycloakAdmin

FLOWS_DIR = Path(__file__).resolve().parent / "flows"
_SUB = " :: "  # sub-flow aliases are "<top alias> :: <name>", unique in the realm


def is_copy_of(alias: str | None, logical: str) -> bool:
    """True for a copy this module built of the flow `logical`: `<logical> <6 hex>`."""
    return (
        bool(alias) and re.fullmatch(re.escape(logical) + r" [0-9a-f]{6}", str(alias)) is not None
    )


class FlowError(Exception):
    """Keycloak refused part of a flow; the message says which."""


class UnreadableFlow(FlowError):
    """Keycloak will not list a flow's steps (HTTP 404 for a flow that is there): one of
    them names an authenticator the server no longer has, e.g. after the JAR of
    keycloak_addon/ was taken out of `providers/`. Such a flow also fails every sign-in
    that reaches it: it is never kept, a new copy is built and it is deleted."""


def desired_flows() -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(FLOWS_DIR.glob("*.json"))]


class FlowBuilder:
    """Reads and writes one realm's authentication flows through the admin API."""

    def __init__(self, admin: KeycloakAdmin, realm: str) -> None:
        self.admin = admin
        self.base = f"admin/realms/{quote(realm, safe='')}/authentication"

    # -- reading ------------------------------------------------------------------

    def top_level(self) -> list[dict[str, Any]]:
        return self._get(f"{self.base}/flows")

    def candidates(self, alias: str) -> list[str]:
        """Copies of the logical flow `alias` in the realm, built by this module."""
        return [f["alias"] for f in self.top_level() if is_copy_of(f["alias"], alias)]

    def tree(self, top_alias: str) -> list[dict[str, Any]]:
        """The flow as the same kind of tree the JSON files hold."""
        path = f"{self.base}/flows/{quote(top_alias, safe='')}/executions"
        response = self.admin.connection.raw_get(path)
        if response.status_code == 404 and any(f["alias"] == top_alias for f in self.top_level()):
            raise UnreadableFlow(
                f"Keycloak cannot show flow {top_alias!r}: a step in it names an "
                "authenticator the server does not have"
            )
        if response.status_code >= 300:
            raise FlowError(f"Keycloak answered {path} with HTTP {response.status_code}")
        flat = response.json()
        root: list[dict[str, Any]] = []
        stack: list[list[dict[str, Any]]] = [root]
        for execution in flat:
            level = int(execution["level"])
            del stack[level + 1 :]
            node: dict[str, Any] = {"requirement": execution["requirement"]}
            if execution.get("authenticationFlow"):
                node["flow"] = execution["displayName"].removeprefix(top_alias + _SUB)
                node["executions"] = []
                stack[level].append(node)
                stack.append(node["executions"])
            else:
                node["authenticator"] = execution["providerId"]
                if execution.get("authenticationConfig"):
                    config = self._get(
                        f"{self.base}/config/{quote(execution['authenticationConfig'], safe='')}"
                    )
                    node["config"] = config.get("config", {})
                stack[level].append(node)
        return root

    def matches(self, top_alias: str, desired: dict[str, Any]) -> bool:
        try:
            tree = self.tree(top_alias)
        except UnreadableFlow:
            return False
        return _normalized(tree) == _normalized(desired["executions"])

    # -- writing ------------------------------------------------------------------

    def build(self, desired: dict[str, Any]) -> str:
        """A complete new copy of `desired`; returns its alias."""
        if len(desired.get("description", "")) > 255:  # Keycloak answers a bare 500
            raise FlowError(f"the description of flow {desired['alias']!r} is over 255 characters")
        top = f"{desired['alias']} {secrets.token_hex(3)}"
        self._post(
            f"{self.base}/flows",
            {
                "alias": top,
                "description": desired.get("description", ""),
                "providerId": "basic-flow",
                "topLevel": True,
                "builtIn": False,
            },
        )
        self._add(top, top, desired["executions"])
        if not self.matches(top, desired):
            raise FlowError(f"Keycloak did not keep flow {top!r} as written")
        return top

    def delete(self, alias: str) -> None:
        for flow in self.top_level():
            if flow["alias"] == alias:
                response = self.admin.connection.raw_delete(
                    f"{self.base}/flows/{quote(flow['id'], safe='')}"
                )
                if response.status_code >= 300:
                    raise FlowError(f"Keycloak kept flow {alias!r}: {response.text[:200]}")

    def _add(self, top: str, parent: str, executions: list[dict[str, Any]]) -> None:
        path = f"{self.base}/flows/{quote(parent, safe='')}/executions"
        for node in executions:
            if "flow" in node:
                sub_alias = top + _SUB + node["flow"]
                self._post(
                    f"{path}/flow",
                    {"alias": sub_alias, "type": "basic-flow", "provider": "basic-flow"},
                )
            else:
                self._post(f"{path}/execution", {"provider": node["authenticator"]})
            added = [e for e in self._get(path) if int(e["level"]) == 0][-1]
            added["requirement"] = node["requirement"]
            response = self.admin.connection.raw_put(path, data=json.dumps(added))
            if response.status_code >= 300:
                raise FlowError(f"Keycloak refused {node['requirement']} in {parent!r}")
            if "config" in node:
                self._post(
                    f"{self.base}/executions/{quote(added['id'], safe='')}/config",
                    {"alias": _config_alias(parent, added["index"]), "config": node["config"]},
                )
            if "flow" in node:
                self._add(top, top + _SUB + node["flow"], node["executions"])

    def _get(self, path: str) -> Any:
        response = self.admin.connection.raw_get(path)
        if response.status_code >= 300:
            raise FlowError(f"Keycloak answered {path} with HTTP {response.status_code}")
        return response.json()

    def _post(self, path: str, body: dict[str, Any]) -> None:
        response = self.admin.connection.raw_post(path, data=json.dumps(body))
        if response.status_code >= 300:
            raise FlowError(f"Keycloak refused {body}: {response.text[:200]}")


def _config_alias(parent: str, index: int) -> str:
    # Keycloak allows only some characters in a config alias ("/" and ":" are refused).
    return re.sub(r"[^A-Za-z0-9 _.-]+", "-", f"{parent} {index}")


def _normalized(executions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Comparable form: config values as strings, sub-flows recursively."""
    out = []
    for node in executions:
        item = {k: v for k, v in node.items() if k not in ("executions", "config")}
        if "config" in node:
            item["config"] = {k: str(v) for k, v in node["config"].items()}
        if "executions" in node:
            item["executions"] = _normalized(node["executions"])
        out.append(item)
    return out
