"""Pending students, proofing hashes and activation codes, on the migrated database."""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import select

from provider.activation_codes import consume_code, issue_code, usable_code
from provider.keycloak import PHONE_NUMBER, STATE_PENDING
from provider.services import Services
from provider.storage import migrate
from provider.storage.models import ActivationCode, Student
from provider.students import NewStudent, create_pending_student


def _new_student(**changes: object) -> NewStudent:
    base = NewStudent(
        user_id=f"q{secrets.token_hex(3)}",
        first_name="Mei",
        last_name="Ho",
        email=f"mei.{secrets.token_hex(3)}@example.edu",
        phone="+85362001122",
        date_of_birth=date(2007, 5, 9),
        id_number="1234567(8)",
        intake="2026-fall",
    )
    return NewStudent(**{**base.__dict__, **changes})


def test_migrations_match_the_models(services: Services) -> None:
    config = migrate.alembic_config(services.engine)
    with services.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.check(config)  # raises when a model change has no migration


def test_created_student_is_pending_with_hashes_only(services: Services, settings) -> None:
    student = _new_student()
    issued = create_pending_student(services, student)
    user = services.keycloak.find_user(student.user_id)
    assert user is not None
    assert user.activation_state == STATE_PENDING
    assert user.attributes[PHONE_NUMBER] == ["+85362001122"]
    assert (user.first_name, user.last_name, user.email) == ("Mei", "Ho", student.email)
    # No clear code, date of birth or ID digits anywhere in the database file.
    db_file = Path(settings.database_url.removeprefix("sqlite:///"))
    raw = db_file.read_bytes()
    for secret in (issued.code, issued.code.replace("-", ""), "2007-05-09", "5678", "12345678"):
        assert secret.encode() not in raw, secret


def test_codes_are_single_use_revocable_and_expire(services: Services) -> None:
    student = _new_student()
    first = create_pending_student(services, student)
    second = create_pending_student(services, student)  # re-issue revokes the first
    now = datetime.now(UTC)
    with services.sessions.begin() as session:
        h = services.hasher
        assert usable_code(session, h, student.user_id, first.code, now) is None
        record = usable_code(session, h, student.user_id, second.code.lower(), now)
        assert record is not None
        assert usable_code(session, h, "zz99999", second.code, now) is None  # someone else's ID
        assert (
            usable_code(session, h, student.user_id, second.code, now + timedelta(days=31)) is None
        )
        assert consume_code(session, record.id, now) is True
        assert consume_code(session, record.id, now) is False  # only once
        assert usable_code(session, h, student.user_id, second.code, now) is None


def test_issue_for_an_unknown_student_is_refused(services: Services) -> None:
    with services.sessions.begin() as session, pytest.raises(ValueError, match="enrol"):
        issue_code(session, services.hasher, "nobody1")


def test_short_id_number_is_refused_and_nothing_stored(services: Services) -> None:
    student = _new_student(id_number="12a")
    with pytest.raises(ValueError, match="at least 4"):
        create_pending_student(services, student)
    assert services.keycloak.find_user(student.user_id) is None
    with services.sessions() as session:
        assert session.get(Student, student.user_id) is None
        codes = session.scalars(
            select(ActivationCode).where(ActivationCode.user_id == student.user_id)
        ).all()
        assert codes == []
