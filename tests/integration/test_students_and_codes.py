"""Pending students, proofing hashes and activation codes, on the migrated database."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
from datetime import UTC, date, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import select

from provider.activation_codes import consume_code, issue_code, usable_code
from provider.keycloak import PHONE_NUMBER, STATE_PENDING
from provider.services import Services
from provider.storage import migrate
from provider.storage.models import ActivationCode, Base, Student
from provider.students import NewStudent, NotAPendingStudent, create_pending_student
from tests.support.cli import run_module


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


def _as_text(value: object) -> str:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return bytes(value).decode("latin-1")
    return value if isinstance(value, str) else json.dumps(value)


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
    # No clear code, date of birth or ID digits anywhere in the database: every value that
    # could hold one (text, bytes, JSON, dates), in every row of every table. Counters and
    # timestamps are left out: a row ID or a timestamp's microseconds can be 5678 by chance.
    with services.engine.connect() as connection:
        dump = "\n".join(
            _as_text(value)
            for table in Base.metadata.sorted_tables
            for row in connection.execute(table.select())
            for value in row
            if not isinstance(value, int | float | datetime) and value is not None
        )
    assert student.user_id in dump  # the dump does hold the rows
    for secret in (issued.code, issued.code.replace("-", ""), "2007-05-09", "5678", "12345678"):
        # As a value of its own: a short digit run turns up inside hex hashes by chance.
        assert not re.search(rf"(?<![0-9A-Za-z]){re.escape(secret)}(?![0-9A-Za-z])", dump), secret


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


def test_cli_creates_a_student_shows_the_code_once_and_revokes_it(
    keycloak_server, realm, settings, services: Services
) -> None:
    env = {
        **realm.env(keycloak_server, DATABASE_URL=settings.database_url),
        "UMPASS_HMAC_KEY": settings.hmac_key.decode(),
        "COLUMNS": "120",
    }
    user_id = f"c{secrets.token_hex(3)}"

    def umpass(*args: str) -> subprocess.CompletedProcess[str]:
        return run_module("provider.cli", env, *args)

    created = umpass(
        "create-student",
        "--user-id",
        user_id,
        "--first-name",
        "Ana",
        "--last-name",
        "Ng",
        "--email",
        f"{user_id}@example.edu",
        "--phone",
        "+85362000001",
        "--date-of-birth",
        "2007-01-31",
        "--id-number",
        "1234567(8)",
    )
    assert created.returncode == 0, created.stderr
    code = re.search(r"[A-Z2-9]{5}-[A-Z2-9]{5}-[A-Z2-9]{5}", created.stdout)
    assert code, created.stdout
    now = datetime.now(UTC)
    with services.sessions() as session:
        assert usable_code(session, services.hasher, user_id, code.group(0), now) is not None
    revoked = umpass("revoke-code", "--user-id", user_id.upper())
    assert revoked.returncode == 0 and "1 code(s) revoked" in revoked.stdout
    with services.sessions() as session:
        assert usable_code(session, services.hasher, user_id, code.group(0), now) is None
    bad = umpass(
        "create-student",
        "--user-id",
        "x",
        "--first-name",
        "A",
        "--last-name",
        "B",
        "--email",
        "a@example.edu",
        "--phone",
        "+85362000001",
        "--date-of-birth",
        "31/01/2007",
        "--id-number",
        "1234",
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: --date-of-birth must be YYYY-MM-DD"


def test_an_existing_account_that_is_not_pending_gets_no_code(services: Services) -> None:
    """A staff account (no activation state) with the same user ID and email: enrolling
    it would hand out a code that sets its password."""
    student = _new_student()
    staff_id = services.keycloak.create_user(
        student.user_id, email=student.email, first_name="Staff", last_name="Member"
    )
    with pytest.raises(NotAPendingStudent):
        create_pending_student(services, student)
    assert services.keycloak.get_user(staff_id).activation_state is None
    with services.sessions() as session:
        assert session.get(Student, student.user_id) is None
