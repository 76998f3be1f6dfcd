"""The recovery flow: its steps, in order (the date of birth only where the university asks
for it). Step names differ from the activation's, so neither flow's engine resumes a row
of the other's."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from provider.flows.engine import FlowEngine
from provider.flows.runner import FlowDefinition
from provider.flows.step import Step
from provider.keyed_hash import KeyedHasher
from provider.recovery.state import RecoveryData
from provider.recovery.steps.birth_date import BirthDateStep
from provider.recovery.steps.choose import ChooseStep
from provider.recovery.steps.code import CodeStep
from provider.recovery.steps.finished import FinishedStep
from provider.recovery.steps.new_password import NewPasswordStep
from provider.recovery.steps.start import StartStep

COOKIE = "umpass_recovery"


def steps(*, asks_birth_date: bool) -> tuple[Step[RecoveryData], ...]:
    second_proof: tuple[Step[RecoveryData], ...] = (BirthDateStep(),) if asks_birth_date else ()
    return (
        StartStep(),
        CodeStep(),
        *second_proof,
        ChooseStep(),
        NewPasswordStep(),
        FinishedStep(),
    )


def definition(*, asks_birth_date: bool) -> FlowDefinition[RecoveryData]:
    return FlowDefinition(
        name="recover",
        prefix="/recover",
        cookie=COOKIE,
        steps=steps(asks_birth_date=asks_birth_date),
        audit_prefix="recovery.step",
        # A start-over is not audited: before the code is proven the flow may name a
        # pending or disabled account, and only those would get the extra write.
        restarted_event=None,
        keeps_session=True,
    )


def make_engine(
    flow: FlowDefinition[RecoveryData],
    sessions: sessionmaker[Session],
    hasher: KeyedHasher,
    *,
    idle: timedelta,
    reads: sessionmaker[Session] | None = None,
) -> FlowEngine[RecoveryData]:
    return FlowEngine(
        sessions, hasher, [s.name for s in flow.steps], RecoveryData, idle=idle, reads=reads
    )
