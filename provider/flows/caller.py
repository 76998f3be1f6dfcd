"""Who sent the student into the flow and waits for its end, as the flow sees it.

A sign-in arriving from Keycloak wraps the activation: it must see the flow end. The flow
knows only this interface, called at fixed points; `provider.oidc.flow_glue` implements
it and registers itself on the app. With nobody registered (no sign-in door configured),
`NoCaller` answers for it: nothing waits, nothing is carried.
"""

from __future__ import annotations

from typing import Protocol

from flask import current_app
from flask.typing import ResponseReturnValue

from provider.flows.engine import FlowEngine, FlowState
from provider.flows.state import ActivationData

EXTENSION = "umpass.flow_caller"


class Caller(Protocol):
    def waiting(self, state: FlowState[ActivationData]) -> bool:
        """Does someone wait for this browser's flow to end?"""
        ...

    def on_start(
        self, engine: FlowEngine[ActivationData], state: FlowState[ActivationData]
    ) -> ResponseReturnValue | None:
        """At the flow's start page: a page of its own, or None to resume the flow."""
        ...

    def carry(self) -> dict[str, str] | None:
        """At identification: what to carry from the browser's session into the flow."""
        ...

    def on_end(
        self, engine: FlowEngine[ActivationData], state: FlowState[ActivationData]
    ) -> ResponseReturnValue | None:
        """At the flow's last page, once its goal is reached: the answer, or None."""
        ...

    def on_impossible(
        self, engine: FlowEngine[ActivationData], state: FlowState[ActivationData]
    ) -> ResponseReturnValue | None:
        """The flow cannot reach its goal: the answer, or None to explain it on the page."""
        ...


class NoCaller:
    def waiting(self, state: FlowState[ActivationData]) -> bool:
        return False

    def on_start(
        self, engine: FlowEngine[ActivationData], state: FlowState[ActivationData]
    ) -> ResponseReturnValue | None:
        return None

    def carry(self) -> dict[str, str] | None:
        return None

    def on_end(
        self, engine: FlowEngine[ActivationData], state: FlowState[ActivationData]
    ) -> ResponseReturnValue | None:
        return None

    def on_impossible(
        self, engine: FlowEngine[ActivationData], state: FlowState[ActivationData]
    ) -> ResponseReturnValue | None:
        return None


def caller() -> Caller:
    return current_app.extensions.get(EXTENSION) or NoCaller()
