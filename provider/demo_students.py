"""The demo students `scripts/dev` shows a developer: always some pending, ready to type,
whatever earlier runs left them in (development only; `umpass seed-demo`).

Each demo student is found by username, never by email (an activated student may have
changed it): a pending one gets a fresh code and its identify lock lifted; one activated,
disabled or turned staff is left as it is; one deleted from Keycloak is made again. When
fewer than `wanted` are pending, new ones are made (demo001, demo002, …), and `fresh`
makes `wanted` new ones whatever the others' state. A student that fails is reported with
what to do about it and the others go on: one student never stops a developer's start.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date
from enum import Enum

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from provider.activation_codes import EnrolmentError, IssuedCode
from provider.guards import lockout
from provider.keycloak import (
    STATE_ACTIVE,
    STATE_PENDING,
    Conflict,
    GatewayError,
    IdentityServiceUnavailable,
    KeycloakUser,
)
from provider.services import Services
from provider.storage.models import Student
from provider.students import (
    NewStudent,
    NotAPendingStudent,
    create_pending_student,
    enrol_and_issue,
)

DEMO_INTAKE = "demo"
EXTRA_PREFIX = "demo"
# New demo students are numbered from 1; give up after this many numbers tried in one run
# (every one taken or failing means something else is wrong, said in the report).
MAX_NEW_TRIES = 50

FIXED = (
    NewStudent(
        "dc12345",
        "Ana",
        "Lei",
        "ana.lei@example.edu",
        "+85362345678",
        date(2007, 3, 14),
        "1234567(8)",
        DEMO_INTAKE,
    ),
    NewStudent(
        "dc23456",
        "Wai Man",
        "Chan",
        "waiman.chan@example.edu",
        "+85366543210",
        date(2006, 11, 2),
        "M765432(1)",
        DEMO_INTAKE,
    ),
    NewStudent(
        "dc34567",
        "João",
        "Sousa",
        "joao.sousa@example.edu",
        "+85368881234",
        date(2007, 7, 30),
        "P4455667",
        DEMO_INTAKE,
    ),
)

_FIRST_NAMES = ("Mei", "Tiago", "Ka Ho", "Inês", "Hoi Ian", "Rui")
_LAST_NAMES = ("Ho", "Costa", "Leong", "Lam", "Pereira", "Wong")


def extra_student(number: int, user_id_length: int) -> NewStudent:
    """The `number`th extra demo student: everything derived from the number, so the same
    student is the same on every run (and its date of birth and ID digits can be shown)."""
    digits = max(1, user_id_length - len(EXTRA_PREFIX))
    prefix = EXTRA_PREFIX[: user_id_length - digits]
    user_id = f"{prefix}{number:0{digits}d}"
    return NewStudent(
        user_id,
        _FIRST_NAMES[number % len(_FIRST_NAMES)],
        _LAST_NAMES[number % len(_LAST_NAMES)],
        f"{user_id}@example.edu",
        f"+85366{number % 1_000_000:06d}",
        date(2006 + number % 2, 1 + number % 12, 1 + number % 28),
        f"D{number:06d}({number % 10})",
        DEMO_INTAKE,
    )


class State(Enum):
    PENDING = "pending: new code below"
    LEFT = "left as it is, no code"
    FAILED = "failed"


@dataclass(frozen=True)
class Outcome:
    student: NewStudent
    state: State
    code: IssuedCode | None = None
    reason: str = ""  # for FAILED: what went wrong and what to do


@dataclass
class SeedReport:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def pending(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.state is State.PENDING]

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.state is State.FAILED]

    @property
    def left(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.state is State.LEFT]


def seed(svc: Services, *, wanted: int = 3, fresh: bool = False) -> SeedReport:
    """Codes for every pending demo student, and new demo students until `wanted` are
    pending (`fresh`: `wanted` new ones). Raises `IdentityServiceUnavailable` only when
    Keycloak does not answer at all."""
    report = SeedReport()
    length = svc.settings.user_id_length
    if not fresh:
        for student in (*FIXED, *_known_extras(svc, length)):
            if student.user_id.strip() and len(student.user_id) == length:
                report.outcomes.append(_refresh(svc, student))
    goal = len(report.pending) + wanted if fresh else wanted
    number = 0
    tried = {o.student.user_id for o in report.outcomes}
    while len(report.pending) < goal and number < MAX_NEW_TRIES:
        number += 1
        student = extra_student(number, length)
        if len(student.user_id) != length:
            break  # a user ID this short has no room for more numbers
        if student.user_id in tried:
            continue
        outcome = _create_new(svc, student)
        if outcome is not None:
            report.outcomes.append(outcome)
    return report


def _known_extras(svc: Services, length: int) -> Iterable[NewStudent]:
    """Extra demo students an earlier run enrolled, in number order."""
    with svc.sessions() as session:
        ids = session.scalars(
            select(Student.user_id).where(Student.intake == DEMO_INTAKE).order_by(Student.user_id)
        ).all()
    for user_id in ids:
        number = _extra_number(user_id, length)
        if number is not None:
            yield extra_student(number, length)


def _extra_number(user_id: str, length: int) -> int | None:
    digits = re.search(r"[0-9]+$", user_id)
    if digits is None:
        return None
    number = int(digits.group(0))
    return number if number > 0 and extra_student(number, length).user_id == user_id else None


def _refresh(svc: Services, student: NewStudent) -> Outcome:
    """A known demo student: a new code when pending, made again when deleted."""
    try:
        user = svc.keycloak.find_user(student.user_id)
        if user is None:
            return _issued(student, create_pending_student(svc, student), svc)
        if not _is_pending(user):
            return Outcome(student, State.LEFT, reason=_why_not_pending(user))
        return _issued(
            student, enrol_and_issue(svc, user.username, student, keycloak_id=user.id), svc
        )
    except NotAPendingStudent:  # made meanwhile by someone else, and not pending
        return Outcome(student, State.LEFT)
    except IdentityServiceUnavailable:
        raise
    except Conflict:
        return _failed(student, _email_taken(student))
    except (GatewayError, EnrolmentError, ValueError, SQLAlchemyError) as exc:
        return _failed(student, _generic(exc))


def _create_new(svc: Services, student: NewStudent) -> Outcome | None:
    """A new demo student, or None when the user ID is taken (the next number is tried)."""
    try:
        if svc.keycloak.find_user(student.user_id) is not None:
            return None
        return _issued(student, create_pending_student(svc, student), svc)
    except NotAPendingStudent:
        return None
    except IdentityServiceUnavailable:
        raise
    except Conflict:
        return _failed(student, _email_taken(student))
    except (GatewayError, EnrolmentError, ValueError, SQLAlchemyError) as exc:
        return _failed(student, _generic(exc))


def _why_not_pending(user: KeycloakUser) -> str:
    if not user.enabled:
        return "disabled"
    if user.activation_state == STATE_ACTIVE:
        return "activated"
    return "not a student (no activation state)"


def _is_pending(user: KeycloakUser) -> bool:
    return user.enabled and user.activation_state == STATE_PENDING


def _issued(student: NewStudent, code: IssuedCode, svc: Services) -> Outcome:
    # A demo student locked out by wrong tries would be no use to the developer.
    lockout.clear(svc.sessions, lockout.lock_key(student.user_id))
    return Outcome(replace(student, user_id=code.user_id), State.PENDING, code)


def _failed(student: NewStudent, reason: str) -> Outcome:
    return Outcome(student, State.FAILED, reason=reason)


def _email_taken(student: NewStudent) -> str:
    return (
        f"another account in the realm already holds {student.email}: delete that account "
        "in the Keycloak admin console, or run `umpass seed-demo --fresh` for new students"
    )


def _generic(exc: Exception) -> str:
    return (
        f"{type(exc).__name__} ({exc}): run `umpass seed-demo` again, or "
        "`umpass seed-demo --fresh` for new demo students"
    )
