"""Enrolling students' proofing data and issuing, checking and consuming activation codes.

Nothing here stores a code, a date of birth or ID digits in clear: only their keyed
hashes. A code is shown once, when issued; re-issuing revokes the previous one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, bindparam, lambda_stmt, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.lambdas import StatementLambdaElement

from provider import audit
from provider.keyed_hash import KeyedHasher, Purpose
from provider.proofing import (
    new_activation_code,
    normalize_activation_code,
    normalize_date_of_birth,
    normalize_id_last4,
)
from provider.storage.models import ActivationCode, Student

DEFAULT_CODE_TTL = timedelta(days=30)
_CODES = ActivationCode.__table__


# Statements as lambdas (see provider/flows/engine.py).
def _by_hash() -> StatementLambdaElement:
    return lambda_stmt(lambda: select(_CODES).where(_CODES.c.code_hash == bindparam("digest")))


def _consume() -> StatementLambdaElement:
    return lambda_stmt(
        lambda: (
            update(_CODES)
            .where(
                _CODES.c.id == bindparam("code_id"),
                _CODES.c.used_at.is_(None),
                _CODES.c.revoked_at.is_(None),
            )
            .values(used_at=bindparam("now"))
        )
    )


class EnrolmentError(ValueError):
    """Proofing data that cannot be stored (e.g. an ID number shorter than 4 characters)."""


@dataclass(frozen=True)
class IssuedCode:
    user_id: str
    code: str  # shown once to whoever distributes it; never stored
    expires_at: datetime


def enrol(
    session: Session,
    hasher: KeyedHasher,
    *,
    user_id: str,
    date_of_birth: date,
    id_number: str,
    intake: str | None = None,
    keycloak_id: str | None = None,
) -> Student:
    """Store (or replace) the proofing hashes for `user_id` (already normalised), and the
    account's Keycloak id when the caller knows it."""
    last4 = normalize_id_last4(id_number)
    if last4 is None:
        raise EnrolmentError("the ID/passport number needs at least 4 letters or digits")
    student = session.get(Student, user_id) or Student(user_id=user_id)
    student.dob_hash = hasher.digest(Purpose.DATE_OF_BIRTH, normalize_date_of_birth(date_of_birth))
    student.id_last4_hash = hasher.digest(Purpose.ID_LAST4, last4)
    student.intake = intake
    if keycloak_id is not None:
        student.keycloak_id = keycloak_id
    session.add(student)
    return student


def issue_code(
    session: Session,
    hasher: KeyedHasher,
    user_id: str,
    *,
    ttl: timedelta = DEFAULT_CODE_TTL,
    now: datetime | None = None,
    actor: str = audit.SYSTEM,
) -> IssuedCode:
    """A new code for an enrolled student; any earlier usable code is revoked."""
    now = now or datetime.now(UTC)
    # The student's row lock makes parallel issuers take turns (PostgreSQL; SQLite has one
    # writer anyway): each revokes the code before it, none trips the one-open-code index.
    if session.get(Student, user_id, with_for_update=True) is None:
        raise EnrolmentError("no proofing data for that user ID: enrol the student first")
    revoke_codes(session, user_id, now=now, actor=actor)
    code = new_activation_code()
    record = ActivationCode(
        user_id=user_id,
        code_hash=hasher.digest(Purpose.ACTIVATION_CODE, code.replace("-", "")),
        issued_at=now,
        expires_at=now + ttl,
    )
    session.add(record)
    audit.record(session, actor, "code.issued", user_id, expires_at=record.expires_at.isoformat())
    return IssuedCode(user_id=user_id, code=code, expires_at=record.expires_at)


def revoke_codes(
    session: Session, user_id: str, *, now: datetime | None = None, actor: str = audit.SYSTEM
) -> int:
    """Revoke every usable code of the student; returns how many."""
    now = now or datetime.now(UTC)
    result = session.execute(
        update(ActivationCode)
        .where(
            ActivationCode.user_id == user_id,
            ActivationCode.used_at.is_(None),
            ActivationCode.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    count = int(result.rowcount or 0)
    if count:
        audit.record(session, actor, "code.revoked", user_id, count=count)
    return count


def usable_code(
    db: Session | Connection, hasher: KeyedHasher, user_id: str, typed_code: str, now: datetime
) -> Row[Any] | None:
    """The student's usable code matching `typed_code` (its row: `.id`, `.expires_at`, ...),
    or None (HMAC always computed). Core, on an ORM session or a connection: identify
    runs it on every attempt."""
    stored = normalize_activation_code(typed_code) or ""
    digest = hasher.digest(Purpose.ACTIVATION_CODE, stored)
    record = db.execute(_by_hash(), {"digest": digest}).one_or_none()
    if record is None or record.user_id != user_id:
        return None
    if record.used_at is not None or record.revoked_at is not None or now >= record.expires_at:
        return None
    return record


def consume_code(db: Session | Connection, code_id: int, now: datetime) -> bool:
    """Mark the code used, once: False when it was already used or revoked."""
    return db.execute(_consume(), {"code_id": code_id, "now": now}).rowcount == 1
