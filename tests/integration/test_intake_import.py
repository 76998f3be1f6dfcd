"""Importing an intake from a Registry CSV into the real Keycloak with the provisioning
credential: all or nothing, idempotent, never touching an active student; codes shown
once in a mail-merge CSV and printable letters, and they work at identify."""

from __future__ import annotations

import csv
import io
import secrets
import stat
import subprocess
from datetime import date
from pathlib import Path

import pytest
from devstack import slapd
from flask import Flask
from keycloak import KeycloakAdmin
from sqlalchemy import select

from provider.intake.checked import check_intake
from provider.intake.provision import Provisioner, import_intake
from provider.intake.records import RawRecord, Rules
from provider.keycloak import ACCEPTED_POLICIES, STATE_PENDING
from provider.services import Services
from provider.storage.models import ActivationCode, AuditEvent, Student
from tests.conftest import KeycloakUnderTest, RealmUnderTest
from tests.support.cli import run_module
from tests.support.flow_client import FlowClient, StudentDetails
from tests.support.inbox import new_mobile
from tests.support.ldap_server import seed_students
from tests.support.policies import accepted_now

HEADER = (
    "Student Number,Given Name,Family Name,Email,Mobile,Date of Birth,ID Number,Programme,Language"
)


class Intake:
    """A generated intake and the `umpass` command pointed at the test realm."""

    def __init__(self, env: dict[str, str], folder: Path, size: int = 3) -> None:
        self.env = env
        self.folder = folder
        self.name = f"intake-{secrets.token_hex(3)}"
        languages = ["en", "zh_Hant", "pt"]
        self.rows = [
            {
                "user_id": f"i{secrets.token_hex(3)}",
                "first": ["Ana", "偉文", "João"][i % 3],
                "last": ["Lei", "陳", "Sousa"][i % 3],
                "phone": new_mobile(),
                "dob": date(2006, 1 + i % 12, 1 + i % 28),
                "id": f"A{secrets.randbelow(10**7):07d}",
                "language": languages[i % 3],
            }
            for i in range(size)
        ]
        self.csv = folder / f"{self.name}.csv"
        self.csv.write_text(
            "\n".join(
                [HEADER]
                + [
                    f"{r['user_id']}01,{r['first']},{r['last']},{r['user_id']}@example.edu,"
                    f"{r['phone']},{r['dob'].isoformat()},{r['id']},BSc,{r['language']}"
                    for r in self.rows
                ]
            )
            + "\n",
            encoding="utf-8",
        )

    def umpass(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_module("provider.cli", self.env, *args)

    def run_import(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.umpass("import-intake", "--intake", self.name, "--csv", str(self.csv), *extra)


@pytest.fixture
def intake(
    keycloak_server: KeycloakUnderTest, realm: RealmUnderTest, settings, tmp_path: Path
) -> Intake:
    env = {
        **realm.env(keycloak_server, DATABASE_URL=settings.database_url),
        "UMPASS_HMAC_KEY": settings.hmac_key.decode(),
        "COLUMNS": "120",
    }
    return Intake(env, tmp_path)


def _provisioner(services: Services, realm: RealmUnderTest) -> Provisioner:
    return Provisioner(
        services.settings.keycloak,
        "umpass-provisioner",
        realm.options.variables["PROVISIONER_CLIENT_SECRET"],
    )


def _codes(path: Path) -> dict[str, dict[str, str]]:
    return {row["user_id"]: row for row in csv.DictReader(io.StringIO(path.read_text()))}


def test_import_creates_pending_accounts_and_codes_that_work(
    intake: Intake, services: Services, app: Flask
) -> None:
    codes, letters = intake.folder / "codes.csv", intake.folder / "letters.html"
    done = intake.run_import("--codes-out", str(codes), "--letters-out", str(letters))
    assert done.returncode == 0, done.stderr
    assert "created 3, already there 0, already active (left as they are) 0" in done.stderr
    accounts = {}
    for row in intake.rows:
        user = services.keycloak.find_user(row["user_id"])
        assert user is not None and user.activation_state == STATE_PENDING
        assert user.attribute("phone_number") == row["phone"]
        accounts[row["user_id"]] = user.id
    with services.reads() as session:
        students = session.scalars(select(Student).where(Student.intake == intake.name)).all()
        assert {s.user_id for s in students} == {r["user_id"] for r in intake.rows}
        # Each account's id from the import's answer: identify reads it, never searches.
        assert {s.user_id: s.keycloak_id for s in students} == accounts
        stored = [value for s in students for value in (s.dob_hash, s.id_last4_hash)]
    # Keyed hashes only: 64 hex digits each, none of them a plain value.
    assert all(len(v) == 64 and set(v) <= set("0123456789abcdef") for v in stored)
    plain = {r["id"][-4:] for r in intake.rows} | {r["dob"].isoformat() for r in intake.rows}
    assert not plain & set(stored)

    # Codes: shown once, in files only the importing user can read.
    issued = _codes(codes)
    assert set(issued) == {r["user_id"] for r in intake.rows}
    for path in (codes, letters):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    page = letters.read_text()
    assert page.count('class="letter"') == 3
    assert "Activate your UMPASS account" in page and "啟用" in page and "Ative" in page
    with services.reads() as session:
        hashes = " ".join(session.scalars(select(ActivationCode.code_hash)))
    assert all(c["activation_code"].replace("-", "") not in hashes for c in issued.values())

    # A code from the letter works at identify.
    first = intake.rows[0]
    flow = FlowClient(app.test_client())
    who = StudentDetails(
        first["user_id"],
        issued[first["user_id"]]["activation_code"],
        first["dob"],
        first["id"][-4:],
    )
    assert flow.identify(who).headers["Location"].endswith("/activate/policies")


def test_running_the_same_import_again_changes_nothing(intake: Intake, services: Services) -> None:
    assert intake.run_import().returncode == 0
    with services.reads() as session:
        before = session.scalars(select(Student).where(Student.intake == intake.name)).all()
    again = intake.run_import()
    assert again.returncode == 0, again.stderr
    assert "created 0, already there 3" in again.stderr
    assert "proofing data stored 0" in again.stderr
    with services.reads() as session:
        after = session.scalars(select(Student).where(Student.intake == intake.name)).all()
    assert [(s.user_id, s.dob_hash) for s in before] == [(s.user_id, s.dob_hash) for s in after]


def test_an_active_student_is_never_reset(intake: Intake, services: Services) -> None:
    assert intake.run_import().returncode == 0
    first = intake.rows[0]["user_id"]
    user = services.keycloak.find_user(first)
    assert user is not None
    assert services.keycloak.activate(
        user.id, "cobalt meadow lantern 77", attributes={ACCEPTED_POLICIES: accepted_now(services)}
    )
    codes = intake.folder / "codes.csv"
    again = intake.run_import("--codes-out", str(codes))
    assert again.returncode == 0, again.stderr
    assert "already active (left as they are) 1" in again.stderr
    after = services.keycloak.find_user(first)
    assert after is not None and after.activation_state == "active"
    assert first not in _codes(codes)  # no code for an active student


def test_a_bad_row_imports_nothing(intake: Intake, services: Services) -> None:
    text = intake.csv.read_text().splitlines()
    text[2] = text[2].replace(intake.rows[1]["dob"].isoformat(), "2006-02-31")
    intake.csv.write_text("\n".join(text) + "\n")
    refused = intake.run_import()
    assert refused.returncode == 2
    assert "line 3: date of birth is not a real date" in refused.stderr
    assert "nothing was imported" in refused.stderr
    for row in intake.rows:
        assert services.keycloak.find_user(row["user_id"]) is None


def test_reissue_revokes_the_previous_code_and_codes_files_are_never_overwritten(
    intake: Intake, services: Services
) -> None:
    first_codes = intake.folder / "first.csv"
    assert intake.run_import("--codes-out", str(first_codes)).returncode == 0
    user_id = intake.rows[0]["user_id"]
    again = intake.umpass("issue-codes", "--user-id", user_id, "--codes-out", str(first_codes))
    assert again.returncode == 2 and "exists already" in again.stderr
    second = intake.folder / "second.csv"
    held = intake.umpass("issue-codes", "--user-id", user_id, "--codes-out", str(second))
    assert held.returncode == 0 and "already hold a usable code" in held.stderr
    third = intake.folder / "third.csv"
    re = intake.umpass("issue-codes", "--user-id", user_id, "--reissue", "--codes-out", str(third))
    assert re.returncode == 0, re.stderr
    with services.reads() as session:
        rows = session.scalars(
            select(ActivationCode)
            .where(ActivationCode.user_id == user_id)
            .order_by(ActivationCode.id)
        ).all()
        actors = set(session.scalars(select(AuditEvent.actor).where(AuditEvent.subject == user_id)))
    assert len(rows) == 2 and rows[0].revoked_at is not None and rows[1].revoked_at is None
    assert any(a.startswith("cli:") for a in actors)


def test_without_the_provisioning_secret_nothing_happens(intake: Intake) -> None:
    env = {k: v for k, v in intake.env.items() if k != "UMPASS_KC_PROVISIONER_SECRET"}
    result = run_module(
        "provider.cli", env, "import-intake", "--intake", intake.name, "--csv", str(intake.csv)
    )
    assert result.returncode == 2
    assert "UMPASS_KC_PROVISIONER_SECRET is not set" in result.stderr


def test_import_from_ldap_through_the_command(
    intake: Intake, slapd_server: slapd.SlapdServer, services: Services
) -> None:
    seeded = seed_students(slapd_server, 4)
    env = {
        **intake.env,
        "UMPASS_LDAP_URL": slapd_server.url,
        "UMPASS_LDAP_BIND_DN": slapd_server.admin_dn,
        "UMPASS_LDAP_BIND_PASSWORD": slapd_server.admin_password,
        "UMPASS_LDAP_BASE_DN": seeded.base_dn,
    }
    done = run_module("provider.cli", env, "import-intake", "--intake", intake.name, "--ldap")
    assert done.returncode == 0, done.stderr
    assert "created 4" in done.stderr
    user_ids = [dn.split(",")[0].removeprefix("uid=") for dn in seeded.dns]
    for user_id in user_ids:
        user = services.keycloak.find_user(user_id[:7])
        assert user is not None and user.activation_state == STATE_PENDING

    # The directory down, or the bind refused: one sentence, and nothing changes.
    for changes, message in (
        ({"UMPASS_LDAP_URL": "ldap://127.0.0.1:9"}, "cannot reach the LDAP server"),
        ({"UMPASS_LDAP_BIND_PASSWORD": "wrong"}, "refused the bind"),
    ):
        refused = run_module(
            "provider.cli", {**env, **changes}, "import-intake", "--intake", "x", "--ldap"
        )
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
        assert "wrong" not in refused.stderr  # never the password


def test_many_batches_in_flight_all_arrive_once(services: Services, realm: RealmUnderTest) -> None:
    """Small batches, two at a time: every student created once, enrolled once, and the
    after-batch hook sees each student exactly once, in batches that exist in Keycloak."""
    raw = [
        RawRecord(
            f"line {n + 2}",
            {
                "user_id": f"b{secrets.token_hex(3)}",
                "first_name": "Bo",
                "last_name": f"Batch{n}",
                "email": f"b{n}.{secrets.token_hex(3)}@example.edu",
                "phone": new_mobile(),
                "date_of_birth": "2006-06-06",
                "id_number": f"B{n:07d}",
            },
        )
        for n in range(7)
    ]
    seen: list[str] = []

    def after(batch):
        for record in batch:
            assert services.keycloak.find_user(record.user_id) is not None
        seen.extend(r.user_id for r in batch)

    with check_intake(raw, Rules(user_id_length=7)) as checked:
        report = import_intake(
            services,
            _provisioner(services, realm),
            checked,
            "batches",
            batch_size=2,
            after_batch=after,
        )
    assert sorted(seen) == sorted(r.values["user_id"] for r in raw)
    assert (report.created, report.existing_pending, report.enrolled) == (7, 0, 7)


def test_rows_that_would_touch_someone_elses_account_import_nothing(
    intake: Intake, services: Services, admin
) -> None:
    staff = intake.rows[0]["user_id"]
    admin.create_user({"username": staff, "enabled": True, "email": f"{staff}@staff.example.edu"})
    taken = intake.rows[1]
    other = f"o{secrets.token_hex(3)}"
    admin.create_user(
        {"username": other, "enabled": True, "email": f"{taken['user_id']}@example.edu"}
    )
    refused = intake.run_import("--codes-out", str(intake.folder / "codes.csv"))
    assert refused.returncode == 2
    assert f"line 2: {staff} is an account that is not a pending student" in refused.stderr
    assert (
        f"line 3: the email of {taken['user_id']} belongs to another account ({other})"
        in refused.stderr
    )
    assert not (intake.folder / "codes.csv").exists()
    assert services.keycloak.find_user(intake.rows[2]["user_id"]) is None  # nothing at all
    with services.reads() as session:
        assert session.scalars(select(Student).where(Student.intake == intake.name)).all() == []


def test_a_student_never_holds_two_open_codes(intake: Intake, services: Services) -> None:
    """Two issuers racing (help desk and a batch) cannot both leave a live code: the
    database refuses the second."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy.exc import IntegrityError

    codes = intake.folder / "codes.csv"
    assert intake.run_import("--codes-out", str(codes)).returncode == 0
    user_id = intake.rows[0]["user_id"]
    now = datetime.now(UTC)
    with pytest.raises(IntegrityError), services.sessions.begin() as session:
        session.add(
            ActivationCode(
                user_id=user_id, code_hash="f" * 64, issued_at=now, expires_at=now + timedelta(1)
            )
        )


def test_check_validates_and_writes_nothing(
    intake: Intake, services: Services, admin: KeycloakAdmin
) -> None:
    checked = intake.run_import("--check")
    assert checked.returncode == 0, checked.stderr
    for row in intake.rows:  # read with the realm admin's eyes: nothing exists
        assert admin.get_users({"username": row["user_id"], "exact": True}) == []
    user_ids = [r["user_id"] for r in intake.rows]
    with services.reads() as session:
        assert session.scalars(select(Student).where(Student.user_id.in_(user_ids))).all() == []
        codes = select(ActivationCode).where(ActivationCode.user_id.in_(user_ids))
        assert session.scalars(codes).all() == []
        imports = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "intake.imported")
        ).all()
        assert [e for e in imports if e.detail.get("intake") == intake.name] == []


class _Crash(Exception):
    """The import process dying between two batches."""


def test_an_import_cut_short_is_run_again_to_completion(
    services: Services, realm: RealmUnderTest, admin: KeycloakAdmin
) -> None:
    raw = [
        RawRecord(
            f"line {n + 2}",
            {
                "user_id": f"c{secrets.token_hex(3)}",
                "first_name": "Cut",
                "last_name": f"Short{n}",
                "email": f"c{n}.{secrets.token_hex(3)}@example.edu",
                "phone": new_mobile(),
                "date_of_birth": "2006-07-07",
                "id_number": f"C{n:07d}",
            },
        )
        for n in range(7)
    ]
    provisioner = _provisioner(services, realm)
    done: list[str] = []

    def crash_after_one_batch(batch: object) -> None:
        done.extend(r.user_id for r in batch)  # type: ignore[attr-defined]
        raise _Crash

    def run(**options):
        with check_intake(raw, Rules(user_id_length=7)) as checked:
            return import_intake(services, provisioner, checked, "cut", batch_size=2, **options)

    with pytest.raises(_Crash):
        run(after_batch=crash_after_one_batch)
    assert 0 < len(done) < len(raw)

    again = run()
    everyone = sorted(r.values["user_id"] for r in raw)
    # The crashed run's batches (and the one in flight beside them) are there already.
    assert again.created + again.existing_pending == len(raw)
    assert again.existing_pending >= len(done)
    group = admin.get_group_by_path("/umpass-students")
    members = {m["username"] for m in admin.get_group_members(group["id"], {"max": 1000})}
    for user_id in everyone:
        account = services.keycloak.find_user(user_id)
        assert account is not None and account.activation_state == STATE_PENDING
        assert user_id in members
    with services.reads() as session:
        stored = session.scalars(select(Student.user_id).where(Student.user_id.in_(everyone)))
        assert sorted(stored) == everyone  # proofing data once each
    third = run()
    assert (third.created, third.enrolled, third.joined_group) == (0, 0, 0)  # nothing changed


def test_the_import_takes_its_records_batch_by_batch(
    services: Services, realm: RealmUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory flat in the intake's size: the second pass takes the checked records as
    batches leave for Keycloak, never all of them at once."""
    from provider.intake.provision import PARALLEL_BATCHES

    raw = [
        RawRecord(
            f"line {n + 2}",
            {
                "user_id": f"l{secrets.token_hex(3)}",
                "first_name": "Lazy",
                "last_name": f"Stream{n}",
                "email": f"l{n}.{secrets.token_hex(3)}@example.edu",
                "phone": new_mobile(),
                "date_of_birth": "2006-08-08",
                "id_number": f"L{n:07d}",
            },
        )
        for n in range(40)
    ]
    taken = 0
    taken_at_first_batch: list[int] = []
    with check_intake(raw, Rules(user_id_length=7), chunk_size=4) as checked:
        records = checked.records

        def counted():
            nonlocal taken
            for record in records():
                taken += 1
                yield record

        monkeypatch.setattr(checked, "records", counted)
        report = import_intake(
            services,
            _provisioner(services, realm),
            checked,
            "lazy",
            batch_size=2,
            after_batch=lambda batch: taken_at_first_batch.append(taken),
        )
    # The batch just done, those in flight, and the next one being filled: no more.
    assert taken_at_first_batch[0] <= (PARALLEL_BATCHES + 1) * 2
    assert taken == report.created == 40
