"""`umpass seed-demo` starts again whatever a developer did to the demo students: activated
one with a changed email, locked one out, deleted one, took one's email for someone else.
It always ends with codes for at least three pending demo students, against the real
Keycloak and database."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from keycloak import KeycloakAdmin

from provider import demo_students
from provider.activation_codes import usable_code
from provider.demo_students import FIXED
from provider.guards import lockout
from provider.keycloak import ACTIVATION_STATE, STATE_ACTIVE
from provider.keyed_hash import Purpose
from provider.proofing import normalize_date_of_birth, normalize_id_last4
from provider.services import Services
from provider.storage.models import IdentifyLockout, Student
from tests.support.accounts import set_attributes
from tests.support.cli import run_module

ANA, WAI_MAN, JOAO = (s.user_id for s in FIXED)


def _ready(services: Services, report: demo_students.SeedReport) -> dict[str, str]:
    """user ID -> code of every pending outcome, each code checked usable with the
    student's own date of birth and ID digits stored."""
    now = datetime.now(UTC)
    codes = {}
    with services.sessions() as session:
        for outcome in report.pending:
            student, issued = outcome.student, outcome.code
            assert issued is not None
            assert usable_code(session, services.hasher, student.user_id, issued.code, now)
            row = session.get(Student, student.user_id)
            assert row is not None
            dob = normalize_date_of_birth(student.date_of_birth)
            assert row.dob_hash == services.hasher.digest(Purpose.DATE_OF_BIRTH, dob)
            last4 = normalize_id_last4(student.id_number)
            assert row.id_last4_hash == services.hasher.digest(Purpose.ID_LAST4, last4 or "")
            codes[student.user_id] = issued.code
    return codes


def _lock(services: Services, user_id: str) -> None:
    key, now = lockout.lock_key(user_id), datetime.now(UTC)
    for _ in range(lockout.MAX_FAILURES):
        assert lockout.begin_attempt(services.sessions, key, now) is None
    assert lockout.record_failure(services.sessions, key, now) is not None
    assert lockout.begin_attempt(services.sessions, key, now) is not None  # locked


def test_seed_demo_starts_again_from_any_state(services: Services, admin: KeycloakAdmin) -> None:
    first = demo_students.seed(services)
    assert list(_ready(services, first)) == [ANA, WAI_MAN, JOAO]

    # Ana activated with a changed email (what made the second start fail), Wai Man
    # locked himself out, João's account was deleted.
    ana = admin.get_user_id(ANA)
    set_attributes(admin, ana, {ACTIVATION_STATE: [STATE_ACTIVE]})
    admin.update_user(ana, {"email": "ana.changed@example.edu", "firstName": "Ana"})
    _lock(services, WAI_MAN)
    admin.delete_user(admin.get_user_id(JOAO))

    second = demo_students.seed(services)
    assert [(o.student.user_id, o.reason) for o in second.left] == [(ANA, "activated")]
    assert not second.failed
    ready = _ready(services, second)
    assert list(ready) == [WAI_MAN, JOAO, "demo001"]
    assert services.keycloak.find_user(ANA).activation_state == STATE_ACTIVE  # left as it is
    with services.sessions() as session:
        row = session.get(IdentifyLockout, lockout.lock_key(WAI_MAN))
        assert row is not None and row.locked_until is None and row.failures == 0

    # Run again: the same pending students, each with a new code (the old one revoked).
    third = demo_students.seed(services)
    again = _ready(services, third)
    assert list(again) == [WAI_MAN, JOAO, "demo001"]
    assert all(again[user_id] != ready[user_id] for user_id in again)

    # --fresh: three new students, whatever the others' state.
    fresh = demo_students.seed(services, fresh=True)
    assert list(_ready(services, fresh)) == ["demo002", "demo003", "demo004"]
    assert not fresh.left and not fresh.failed


def test_one_failing_student_never_stops_the_others(
    services: Services, admin: KeycloakAdmin
) -> None:
    """João deleted while another account took his email: his creation fails with what
    to do about it, and the others still make three pending."""
    demo_students.seed(services)  # whatever ran before, the demo students exist
    joao = next(s for s in FIXED if s.user_id == JOAO)
    admin.delete_user(admin.get_user_id(JOAO))
    squatter = admin.create_user(
        {"username": "squatter1", "email": joao.email, "enabled": True, "firstName": "S"}
    )
    try:
        report = demo_students.seed(services)
        [failed] = report.failed
        assert failed.student.user_id == JOAO
        assert joao.email in failed.reason and "--fresh" in failed.reason
        assert len(_ready(services, report)) >= 3
        assert JOAO not in [o.student.user_id for o in report.pending]
    finally:
        admin.delete_user(squatter)
    assert JOAO in _ready(services, demo_students.seed(services))


def test_the_command_prints_three_ready_to_type(
    keycloak_server, realm, settings, services: Services
) -> None:
    env = {
        **realm.env(keycloak_server, DATABASE_URL=settings.database_url),
        "UMPASS_HMAC_KEY": settings.hmac_key.decode(),
        "COLUMNS": "160",
    }
    done = run_module("provider.cli", env, "seed-demo")
    assert done.returncode == 0, done.stderr
    rows = re.findall(
        r"│ (\w+) +│ ([A-Z2-9]{5}-[A-Z2-9]{5}-[A-Z2-9]{5}) │ (\d\d \d\d \d{4}) +│ (\w{4}) ",
        done.stdout,
    )
    assert len(rows) >= 3, done.stdout
    by_id = {s.user_id: s for s in FIXED}
    for user_id, _code, dob, last4 in rows:
        if user_id in by_id:
            assert dob == by_id[user_id].date_of_birth.strftime("%d %m %Y")
            assert last4 == normalize_id_last4(by_id[user_id].id_number)
    assert "Demo students ready to activate" in done.stdout
