"""What a step is: one module that shows its page and handles its submit.

The engine calls two methods; everything a step needs arrives in one `Visit`:

- `show(visit)` answers a GET with the step's page;
- `submit(visit)` answers a POST with an outcome: `Stay` (a page of this step again: an
  invalid submit, or a stage within the step), `Next` (done: the engine moves on to the
  next step in the flow's list, writing the step's `along` in the same transaction),
  `Identified` (the first step knows who it is: the engine stores the flow under a new id
  and moves on) or `Finished` (the flow reached its goal: the engine moves to its last
  page) or `Impossible` (it never can: whoever sent the student is answered, else the
  step's page explains).

A step never names another step, never knows who sent the student (a sign-in or the
start page) and never stores the flow itself except through `visit.save()`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Generic, Protocol, runtime_checkable

from flask import render_template, request
from flask.typing import ResponseReturnValue
from sqlalchemy import Connection

from provider.flows.engine import D, FlowEngine, FlowState
from provider.services import Services

if TYPE_CHECKING:
    from flask_babel.speaklater import LazyString


@dataclass(frozen=True)
class Stay:
    """Show this step's page again (with its status): invalid, or a stage within it."""

    response: ResponseReturnValue


@dataclass(frozen=True)
class Next:
    """This step is done: on to the next one. `along` writes more in the transaction that
    moves the flow on (e.g. the events of what the step wrote): both land, or neither."""

    along: Callable[[Connection], None] | None = None


@dataclass(frozen=True)
class Identified(Generic[D]):
    """The first step knows whom the flow is for: store the flow with this data. `then`
    runs once the flow is stored under its id (work bound to that id, e.g. a code sent for
    this flow only); its answer, if any, replaces the move to the next step."""

    user_id: str
    data: D
    then: Callable[[FlowState[D]], ResponseReturnValue | None] | None = None


@dataclass(frozen=True)
class Finished:
    """The flow reached its goal (the account is active): on to its end page."""


@dataclass(frozen=True)
class Impossible:
    """The flow can never reach its goal (the code was revoked or used meanwhile): whoever
    sent the student is answered, or else this page explains it."""

    response: ResponseReturnValue


Outcome = Stay | Next | Identified[D] | Finished | Impossible


@dataclass(frozen=True)
class StepLimit:
    """A per-address limit some submits of a step spend (checked before the step runs)."""

    value: Callable[[], str]  # the limit, e.g. "10 per minute" (a setting)
    spends: Callable[[], bool] = field(default=lambda: request.method == "POST")
    # Whose budget a request spends: the client's address (None), or e.g. the account
    # typed; `scope` tells a step's limits apart.
    key: Callable[[], str] | None = None
    scope: str = "address"


@dataclass
class Visit(Generic[D]):
    """One request to one step: the services, the flow and how to draw a page."""

    svc: Services
    engine: FlowEngine[D]
    state: FlowState[D]
    step: Step[D]
    context: dict[str, object]  # what every page of the flow gets (step n of N, who)
    waiting_sign_in: bool  # a sign-in waits for this activation (the password write says so)

    @property
    def data(self) -> D:
        """What the earlier steps collected (every step after the first has it)."""
        if self.state.data is None:
            raise LookupError("the flow has not identified anyone yet")
        return self.state.data

    def page(
        self, status: int = 200, headers: dict[str, str] | None = None, **context: object
    ) -> ResponseReturnValue:
        body = render_template(self.step.template, **self.context, **context)
        return body, status, headers or {}

    def save(self) -> None:
        """Write what this step collected, staying on it (raises FlowConflict when a
        parallel request changed the flow first)."""
        self.engine.save(self.state)


@runtime_checkable
class Reopens(Protocol[D]):
    """A step whose result can stop holding while the student is on a later step (the
    policies step: a new version published meanwhile). The runner asks it on every
    post to a later step, and moves the flow back to it when it no longer holds."""

    name: ClassVar[str]

    def holds(self, visit: Visit[D]) -> bool: ...

    def reopened_message(self) -> str: ...


class Step(Protocol[D]):
    name: ClassVar[str]
    title: ClassVar[LazyString]
    template: ClassVar[str]
    limits: ClassVar[tuple[StepLimit, ...]]

    def show(self, visit: Visit[D]) -> ResponseReturnValue: ...

    def submit(self, visit: Visit[D]) -> Outcome[D]: ...
