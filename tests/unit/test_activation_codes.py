"""Activation codes on a real (SQLite) database: enrolment stores hashes only, a new code
revokes the one before, a code is usable only by its student, before it expires, once."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from provider import activation_codes as codes
from provider.keyed_hash import KeyedHasher, Purpose
from provider.storage.models import ActivationCode, AuditEvent, Student

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DOB = date(2007, 5, 9)


def _enrol(sessions: sessionmaker[Session], hasher: KeyedHasher, user_id: str, **kw) -> None:
    with sessions.begin() as session:
        codes.enrol(
            session,
            hasher,
            user_id=user_id,
            date_of_birth=kw.get("date_of_birth", DOB),
            id_number=kw.get("id_number", "1234567(8)"),
            intake=kw.get("intake"),
        )


def _issue(sessions, hasher, user_id: str, now: datetime = T0, **kw) -> codes.IssuedCode:
    with sessions.begin() as session:
        return codes.issue_code(session, hasher, user_id, now=now, **kw)


def _rows(sessions, user_id: str) -> list[ActivationCode]:
    with sessions() as session:
        return list(
            session.scalars(
                select(ActivationCode)
                .where(ActivationCode.user_id == user_id)
                .order_by(ActivationCode.id)
            )
        )


def _audit(sessions) -> list[tuple[str, str, str | None, dict]]:
    with sessions() as session:
        rows = session.scalars(select(AuditEvent).order_by(AuditEvent.id))
        return [(e.actor, e.action, e.subject, e.detail) for e in rows]


def _usable(sessions, hasher, user_id: str, typed: str, now: datetime) -> int | None:
    with sessions() as session:
        record = codes.usable_code(session, hasher, user_id, typed, now)
        return None if record is None else record.id


def test_enrolment_stores_the_keyed_hashes_and_replaces_them(sessions, hasher) -> None:
    _enrol(sessions, hasher, "dc12345", intake="2026-fall")
    with sessions() as session:
        student = session.get(Student, "dc12345")
        assert student is not None
        assert student.dob_hash == hasher.digest(Purpose.DATE_OF_BIRTH, "2007-05-09")
        assert student.id_last4_hash == hasher.digest(Purpose.ID_LAST4, "5678")
        assert student.intake == "2026-fall"
    # Enrolling again replaces every value (one row per student), the intake too.
    _enrol(sessions, hasher, "dc12345", date_of_birth=date(2007, 5, 10), id_number="M7654321")
    with sessions() as session:
        assert session.query(Student).count() == 1
        student = session.get(Student, "dc12345")
        assert student.dob_hash == hasher.digest(Purpose.DATE_OF_BIRTH, "2007-05-10")
        assert student.id_last4_hash == hasher.digest(Purpose.ID_LAST4, "4321")
        assert student.intake is None


def test_enrolment_refuses_an_id_number_too_short_and_stores_nothing(sessions, hasher) -> None:
    # The operator reads the message (`umpass create-student` prints it).
    with pytest.raises(codes.EnrolmentError, match=r"^the ID/passport number needs at least 4 "):
        _enrol(sessions, hasher, "dc12345", id_number="12a")
    with sessions() as session:
        assert session.get(Student, "dc12345") is None


def test_a_code_is_issued_only_to_an_enrolled_student(sessions, hasher) -> None:
    with pytest.raises(codes.EnrolmentError, match=r"^no proofing data for that user ID: enrol"):
        _issue(sessions, hasher, "dc12345")
    assert _rows(sessions, "dc12345") == []
    assert _audit(sessions) == []


def test_issuing_stores_the_hash_and_the_expiry_and_audits(sessions, hasher) -> None:
    _enrol(sessions, hasher, "dc12345")
    issued = _issue(sessions, hasher, "dc12345", ttl=timedelta(days=3), actor="helpdesk:ana")
    assert (issued.user_id, issued.expires_at) == ("dc12345", T0 + timedelta(days=3))
    [row] = _rows(sessions, "dc12345")
    assert row.code_hash == hasher.digest(Purpose.ACTIVATION_CODE, issued.code.replace("-", ""))
    assert (row.issued_at, row.expires_at) == (T0, T0 + timedelta(days=3))
    assert (row.used_at, row.revoked_at, row.claimed_by) == (None, None, None)
    assert _audit(sessions) == [
        (
            "helpdesk:ana",
            "code.issued",
            "dc12345",
            {"expires_at": (T0 + timedelta(days=3)).isoformat()},
        )
    ]


def test_issuing_defaults_to_now_and_thirty_days(sessions, hasher) -> None:
    _enrol(sessions, hasher, "dc12345")
    before = datetime.now(UTC)
    with sessions.begin() as session:
        issued = codes.issue_code(session, hasher, "dc12345")
    after = datetime.now(UTC)
    assert before + timedelta(days=30) <= issued.expires_at <= after + timedelta(days=30)
    assert _audit(sessions)[0][0] == "system"


def test_a_new_code_revokes_the_open_one_and_only_it(sessions, hasher) -> None:
    for user_id in ("dc12345", "dc67890"):
        _enrol(sessions, hasher, user_id)
    first = _issue(sessions, hasher, "dc12345")
    other = _issue(sessions, hasher, "dc67890")
    later = T0 + timedelta(hours=1)
    second = _issue(sessions, hasher, "dc12345", now=later, actor="helpdesk:ana")
    old, new = _rows(sessions, "dc12345")
    assert (old.revoked_at, new.revoked_at) == (later, None)
    assert _rows(sessions, "dc67890")[0].revoked_at is None  # another student's code stands
    assert ("helpdesk:ana", "code.revoked", "dc12345", {"count": 1}) in _audit(sessions)
    assert _usable(sessions, hasher, "dc12345", first.code, later) is None
    assert _usable(sessions, hasher, "dc12345", second.code, later) == new.id
    assert _usable(sessions, hasher, "dc67890", other.code, later) is not None


def test_revoking_counts_only_open_codes_and_audits_only_a_revocation(sessions, hasher) -> None:
    _enrol(sessions, hasher, "dc12345")
    _issue(sessions, hasher, "dc12345")
    with sessions.begin() as session:
        assert codes.revoke_codes(session, "dc12345", now=T0, actor="helpdesk:ana") == 1
    with sessions.begin() as session:  # nothing open any more: nothing to count or audit
        assert codes.revoke_codes(session, "dc12345", now=T0 + timedelta(hours=1)) == 0
    assert _rows(sessions, "dc12345")[0].revoked_at == T0  # the first revocation's time stays
    used = _issue(sessions, hasher, "dc12345", now=T0 + timedelta(hours=2))
    code_id = _usable(sessions, hasher, "dc12345", used.code, T0 + timedelta(hours=2))
    with sessions.begin() as session:
        assert codes.consume_code(session, code_id, T0 + timedelta(hours=2))
    with sessions.begin() as session:  # a used code is not revoked: it stays used
        assert codes.revoke_codes(session, "dc12345") == 0
    assert _rows(sessions, "dc12345")[1].revoked_at is None
    revoked = [e for e in _audit(sessions) if e[1] == "code.revoked"]
    assert revoked == [("helpdesk:ana", "code.revoked", "dc12345", {"count": 1})]


def test_revoking_defaults_to_now(sessions, hasher) -> None:
    _enrol(sessions, hasher, "dc12345")
    _issue(sessions, hasher, "dc12345")
    before = datetime.now(UTC)
    with sessions.begin() as session:
        codes.revoke_codes(session, "dc12345")
    revoked_at = _rows(sessions, "dc12345")[0].revoked_at
    assert revoked_at is not None and before <= revoked_at <= datetime.now(UTC)
    assert _audit(sessions)[-1][0] == "system"


def test_a_code_is_usable_by_its_student_until_it_expires(sessions, hasher) -> None:
    for user_id in ("dc12345", "dc67890"):
        _enrol(sessions, hasher, user_id)
    issued = _issue(sessions, hasher, "dc12345", ttl=timedelta(days=1))
    [row] = _rows(sessions, "dc12345")
    typed = issued.code.lower().replace("-", " ")  # case, spaces and dashes forgiven
    assert _usable(sessions, hasher, "dc12345", typed, T0) == row.id
    assert _usable(sessions, hasher, "dc67890", issued.code, T0) is None  # not their code
    end = T0 + timedelta(days=1)
    assert _usable(sessions, hasher, "dc12345", issued.code, end - timedelta(seconds=1)) == row.id
    assert _usable(sessions, hasher, "dc12345", issued.code, end) is None
    assert _usable(sessions, hasher, "dc12345", "not a code", T0) is None


def test_a_code_is_consumed_once(sessions, hasher) -> None:
    for user_id in ("dc12345", "dc67890"):
        _enrol(sessions, hasher, user_id)
    issued = _issue(sessions, hasher, "dc12345")
    _issue(sessions, hasher, "dc67890")
    code_id = _usable(sessions, hasher, "dc12345", issued.code, T0)
    later = T0 + timedelta(minutes=5)
    with sessions.begin() as session:
        assert codes.consume_code(session, code_id, later) is True
    with sessions.begin() as session:
        assert codes.consume_code(session, code_id, later) is False
    assert _rows(sessions, "dc12345")[0].used_at == later
    assert _rows(sessions, "dc67890")[0].used_at is None  # only that code
    assert _usable(sessions, hasher, "dc12345", issued.code, later) is None


def test_a_revoked_code_cannot_be_consumed(sessions, hasher) -> None:
    _enrol(sessions, hasher, "dc12345")
    issued = _issue(sessions, hasher, "dc12345")
    code_id = _usable(sessions, hasher, "dc12345", issued.code, T0)
    with sessions.begin() as session:
        codes.revoke_codes(session, "dc12345", now=T0)
    with sessions.begin() as session:
        assert codes.consume_code(session, code_id, T0) is False
    assert _rows(sessions, "dc12345")[0].used_at is None
