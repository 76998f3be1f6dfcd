"""Who sent the student into a flow and waits for its end, as the flow sees it.

A sign-in arriving from Keycloak wraps the activation: it must see the flow end. The flow
knows only this interface, called at fixed points; `provider.oidc.flow_glue` implements
it for the activation and registers itself on the app. With nobody registered (no
sign-in door configured, or a flow nobody waits for), `NoCaller` answers for it: nothing
waits, nothing is carried.
"""

from __future__ import annotations

from typing import Any, Protocol

from flask import current_app
from flask.typing import ResponseReturnValue

from provider.flows.engine import D, FlowEngine, FlowState

EXTENSION = "umpass.flow_caller"


class Caller(Protocol[D]):
    def waiting(self, state: FlowState[D]) -> bool:
        """Does someone wait for this browser's flow to end?"""
        ...

    def on_start(self, engine: FlowEngine[D], state: FlowState[D]) -> ResponseReturnValue | None:
        """At the flow's start page: a page of its own, or None to resume the flow."""
        ...

    def carry_into(self, data: D) -> None:
        """At identification: carry what it needs from the browser's session into the flow."""
        ...

    def user_id_hint(self) -> str | None:
        """The user ID the student already typed where they came from, as the caller was
        told it: unchecked text, for a pre-fill only."""
        ...

    def on_end(self, engine: FlowEngine[D], state: FlowState[D]) -> ResponseReturnValue | None:
        """At the flow's last page, once its goal is reached: the answer, or None."""
        ...

    def on_impossible(
        self, engine: FlowEngine[D], state: FlowState[D]
    ) -> ResponseReturnValue | None:
        """The flow cannot reach its goal: the answer, or None to explain it on the page."""
        ...


class NoCaller:
    def waiting(self, state: FlowState[Any]) -> bool:
        return False

    def on_start(self, engine: FlowEngine[Any], state: FlowState[Any]) -> None:
        return None

    def carry_into(self, data: object) -> None:
        return None

    def user_id_hint(self) -> None:
        return None

    def on_end(self, engine: FlowEngine[Any], state: FlowState[Any]) -> None:
        return None

    def on_impossible(self, engine: FlowEngine[Any], state: FlowState[Any]) -> None:
        return None


def activation_caller() -> Caller[Any]:
    """Whoever waits for the activation flow (the sign-in door, when installed)."""
    return current_app.extensions.get(EXTENSION) or NoCaller()
