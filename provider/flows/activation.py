"""The student activation flow: its steps, in order. Adding a step is one module under
`steps/` and one line here."""

from __future__ import annotations

from datetime import timedelta

from flask_babel import gettext as _
from sqlalchemy import ColumnElement, Table, bindparam, exists, or_
from sqlalchemy.orm import Session, sessionmaker

from provider.flows.caller import activation_caller
from provider.flows.engine import FLOW_COOKIE, FlowEngine
from provider.flows.runner import FlowDefinition
from provider.flows.state import ActivationData
from provider.flows.step import Step
from provider.flows.steps.contacts import ContactsStep
from provider.flows.steps.done import DoneStep
from provider.flows.steps.identify import IdentifyStep
from provider.flows.steps.password import PasswordStep
from provider.flows.steps.policies import PoliciesStep
from provider.keyed_hash import KeyedHasher
from provider.storage.models import ActivationCode

_CODES = ActivationCode.__table__

STEPS: tuple[Step[ActivationData], ...] = (
    IdentifyStep(),
    PoliciesStep(),
    ContactsStep(),
    PasswordStep(),
    DoneStep(),
)


def make_engine(
    sessions: sessionmaker[Session],
    hasher: KeyedHasher,
    *,
    idle: timedelta,
    reads: sessionmaker[Session] | None = None,
) -> FlowEngine[ActivationData]:
    return FlowEngine(
        sessions, hasher, [s.name for s in STEPS], ActivationData, idle=idle, reads=reads
    )


def code_still_stands(flows: Table) -> ColumnElement[bool]:
    """Is the activation code this flow was identified with still usable (not revoked,
    re-issued or expired since)? Once the account is active the flow needs it no more.
    A condition on the flow's row: checked in the statement that loads it."""
    return or_(
        flows.c.step == STEPS[-1].name,
        exists().where(
            _CODES.c.id == flows.c.state["code_id"].as_integer(),
            _CODES.c.revoked_at.is_(None),
            _CODES.c.expires_at > bindparam("now"),
        ),
    )


ACTIVATION = FlowDefinition(
    name="flow",
    prefix="/activate",
    cookie=FLOW_COOKIE,
    steps=STEPS,
    still_valid=code_still_stands,
    invalid_message=lambda: _(
        "Your activation code was replaced or has expired, so we started again."
    ),
    caller=activation_caller,
)
