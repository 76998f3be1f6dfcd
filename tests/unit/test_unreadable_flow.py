"""A flow Keycloak will not list (one of its steps names an authenticator the server no
longer has: the JAR of keycloak_addon/ taken out) is never kept as "matching": apply
builds a new copy and deletes it. Seen on Keycloak 26.7.3: the executions of such a
flow answer HTTP 404 and every sign-in through it fails until the flow is replaced.

A stand-in for the admin connection: a real Keycloak gets there only through a restart
without the JAR on a database that keeps the realm."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import pytest
from keycloak import KeycloakAdmin

from keycloak_config.flows import FlowBuilder, FlowError, UnreadableFlow

BROKEN = "umpass browser 0a1b2c"


@dataclass
class _Answer:
    status_code: int
    body: Any = None

    def json(self) -> Any:
        return self.body


class _Connection:
    def raw_get(self, path: str) -> _Answer:
        if path.endswith("/authentication/flows"):
            return _Answer(200, [{"alias": BROKEN, "id": "f1"}])
        return _Answer(404, {"error": "Could not find flow with id"})


class _Admin:
    connection = _Connection()


def test_a_flow_keycloak_cannot_show_never_matches() -> None:
    builder = FlowBuilder(cast(KeycloakAdmin, _Admin()), "uni")
    with pytest.raises(UnreadableFlow, match="names an authenticator the server does not have"):
        builder.tree(BROKEN)
    assert builder.matches(BROKEN, {"executions": []}) is False
    # A flow that is not there at all is another matter: the caller hears of it.
    with pytest.raises(FlowError) as missing:
        builder.tree("umpass browser ffffff")
    assert not isinstance(missing.value, UnreadableFlow)
