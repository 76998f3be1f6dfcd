"""`umpass import-intake` and `umpass issue-codes`: the IT admins' intake tools.

    umpass import-intake --intake 2026-fall --csv registry.csv [--check]
                         [--codes-out codes.csv --letters-out letters.html] [--expires-days 30]
    umpass import-intake --intake 2026-fall --ldap ...
    umpass issue-codes (--intake NAME | --user-id ID ...) [--reissue]
                       --codes-out codes.csv [--letters-out letters.html]

Every row is checked before anything is written; problems are listed by line (or DN).
The import uses the provisioning credential (UMPASS_KC_PROVISIONER_SECRET), never the
service's. Codes are written once, to new files readable by the current user only.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import partial
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from sqlalchemy import select

from provider.config import Settings
from provider.contact_input import PhonePolicy
from provider.intake import letters as letter_files
from provider.intake.checked import CheckedIntake, check_intake
from provider.intake.csv_source import columns_from_env, csv_rows
from provider.intake.provision import (
    Provisioner,
    ProvisioningError,
    import_intake,
    issue_intake_codes,
)
from provider.intake.records import IntakeInvalid, IntakeRecord, IntakeSourceError, Rules
from provider.keycloak import STUDENTS_GROUP
from provider.progress import progress_bar
from provider.proofing import normalize_user_id
from provider.services import Services
from provider.storage.models import Student

MAX_PROBLEMS_SHOWN = 50


class IntakeCommandError(Exception):
    """One line that says what to fix."""


def add_commands(sub: argparse._SubParsersAction, commands: dict[str, Callable]) -> None:
    imp = sub.add_parser("import-intake", help="import an intake from a Registry CSV or LDAP")
    imp.add_argument("--intake", required=True, help="the intake's name, e.g. 2026-fall")
    source = imp.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", type=Path, help="the Registry's CSV file (UTF-8)")
    source.add_argument("--ldap", action="store_true", help="read from UMPASS_LDAP_* settings")
    imp.add_argument("--check", action="store_true", help="validate only, write nothing")
    _code_options(imp)
    commands["import-intake"] = cmd_import_intake
    issue = sub.add_parser("issue-codes", help="issue activation codes for an intake or students")
    who = issue.add_mutually_exclusive_group(required=True)
    who.add_argument("--intake")
    who.add_argument("--user-id", nargs="+")
    issue.add_argument("--reissue", action="store_true", help="replace codes still usable")
    _code_options(issue, required=True)
    commands["issue-codes"] = cmd_issue_codes


def _code_options(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    parser.add_argument("--codes-out", type=Path, required=required, help="new CSV for mail merge")
    parser.add_argument("--letters-out", type=Path, help="new HTML file, one letter per page")
    parser.add_argument("--expires-days", type=int, default=30)


def _progress() -> Progress:
    return progress_bar(console=Console(stderr=True))


def check_source(args: argparse.Namespace, svc_settings: Settings) -> CheckedIntake:
    """Every row of the CSV or the directory checked, read once as it streams in."""
    rules = Rules(
        user_id_length=svc_settings.user_id_length,
        phone_policy=PhonePolicy(country_codes=svc_settings.delivery.phone_country_codes),
    )
    try:
        if args.csv:
            return check_intake(csv_rows(args.csv, columns_from_env(os.environ)), rules)
        from provider.intake.ldap_source import (  # only when asked: needs ldap3
            ldap_rows,
            ldap_settings_from_env,
        )

        return check_intake(ldap_rows(ldap_settings_from_env(os.environ)), rules)
    except IntakeSourceError as exc:
        raise IntakeCommandError(str(exc)) from None
    except IntakeInvalid as invalid:
        raise _problems(invalid) from None


def _problems(invalid: IntakeInvalid) -> IntakeCommandError:
    shown = invalid.problems[:MAX_PROBLEMS_SHOWN]
    for problem in shown:
        print(f"  {problem}", file=sys.stderr)
    more = invalid.total - len(shown)
    if more:
        print(f"  … and {more} more", file=sys.stderr)
    return IntakeCommandError(f"{invalid.total} problem(s) in the intake: nothing was imported")


def _provisioner(svc: Services) -> Provisioner:
    secret = os.environ.get("UMPASS_KC_PROVISIONER_SECRET", "").strip()
    if not secret:
        raise IntakeCommandError(
            "UMPASS_KC_PROVISIONER_SECRET is not set: imports use the provisioning client"
        )
    client_id = os.environ.get("UMPASS_KC_PROVISIONER_ID", "").strip() or "umpass-provisioner"
    return Provisioner(svc.settings.keycloak, client_id, secret)


def cmd_import_intake(args: argparse.Namespace, svc: Services) -> None:
    with check_source(args, svc.settings) as checked:
        print(
            f"{checked.count} students in intake {args.intake}: every row is valid",
            file=sys.stderr,
        )
        if args.check:
            return
        _check_outputs(args)
        provisioner = _provisioner(svc)
        sheet = _code_sheet(args, svc) if args.codes_out else None
        try:
            with _progress() as progress:
                task = progress.add_task("importing", total=checked.count)
                report = import_intake(
                    svc,
                    provisioner,
                    checked,
                    args.intake,
                    progress=lambda n: progress.advance(task, n),
                    after_batch=partial(_issue, svc, args, sheet) if sheet else None,
                )
        except IntakeInvalid as invalid:  # conflicts with accounts already in Keycloak
            raise _problems(invalid) from None
        except ProvisioningError as exc:
            raise IntakeCommandError(f"{exc} (run the same import again to complete it)") from None
        finally:
            if sheet:
                sheet.close()  # removed again when nothing was issued
    print(
        f"created {report.created}, already there {report.existing_pending}, "
        f"already active (left as they are) {report.already_active}, "
        f"proofing data stored {report.enrolled}, joined {STUDENTS_GROUP} {report.joined_group}",
        file=sys.stderr,
    )
    if sheet:
        _finish_sheet(args, sheet, checked.count - report.already_active)


def cmd_issue_codes(args: argparse.Namespace, svc: Services) -> None:
    _check_outputs(args)
    provisioner = _provisioner(svc)
    try:
        pending = _pending_people(provisioner)
    except ProvisioningError as exc:
        raise IntakeCommandError(str(exc)) from None
    with svc.reads() as session:
        if args.intake:
            rows = session.scalars(select(Student).where(Student.intake == args.intake)).all()
        else:
            ids = [normalize_user_id(u, svc.settings.user_id_length) or u for u in args.user_id]
            rows = session.scalars(select(Student).where(Student.user_id.in_(ids))).all()
    students = {s.user_id: s for s in rows if s.user_id in pending}
    if not students:
        raise IntakeCommandError("no pending students with proofing data match")

    def person(user_id: str) -> IntakeRecord:
        first, last, email = pending[user_id]
        return IntakeRecord(
            where="",
            user_id=user_id,
            first_name=first,
            last_name=last,
            email=email,
            phone="",
            date_of_birth=students[user_id].created_at.date(),  # unused for letters
            id_number="",
            language=students[user_id].language or "en",
        )

    sheet = _code_sheet(args, svc)
    try:
        _issue(svc, args, sheet, [person(user_id) for user_id in sorted(students)])
    finally:
        sheet.close()
    _finish_sheet(args, sheet, len(students))


def _pending_people(provisioner: Provisioner) -> dict[str, tuple[str, str, str]]:
    return {
        u["username"]: (u.get("firstName", ""), u.get("lastName", ""), u.get("email", ""))
        for u in provisioner.pending_users()
    }


def _check_outputs(args: argparse.Namespace) -> None:
    for path in (args.codes_out, args.letters_out):
        if path is not None and path.exists():
            raise IntakeCommandError(f"{path} exists already: codes are written to new files only")
    if args.letters_out is not None and args.codes_out is None:
        raise IntakeCommandError("--letters-out needs --codes-out too (the mail-merge file)")


def _code_sheet(args: argparse.Namespace, svc: Services) -> letter_files.CodeSheet:
    return letter_files.CodeSheet(
        args.codes_out, args.letters_out, svc.settings.base_url + "/activate/"
    )


def _issue(
    svc: Services,
    args: argparse.Namespace,
    sheet: letter_files.CodeSheet,
    people: Sequence[IntakeRecord],
) -> None:
    """Codes for one batch of students, straight onto the sheet."""
    issued = issue_intake_codes(
        svc,
        [who.user_id for who in people],
        ttl=timedelta(days=args.expires_days),
        reissue=getattr(args, "reissue", False),
        actor=f"cli:{getpass.getuser()}",
    )
    by_id = {who.user_id: who for who in people}
    sheet.add(
        [
            letter_files.Letter(
                user_id=code.user_id,
                first_name=by_id[code.user_id].first_name,
                last_name=by_id[code.user_id].last_name,
                email=by_id[code.user_id].email,
                language=by_id[code.user_id].language,
                code=code.code,
                expires_at=code.expires_at,
            )
            for code in issued
        ]
    )


def _finish_sheet(args: argparse.Namespace, sheet: letter_files.CodeSheet, asked: int) -> None:
    skipped = asked - sheet.count
    print(
        f"{sheet.count} code(s) written to {args.codes_out}"
        + (f" and {args.letters_out}" if args.letters_out else "")
        + (f"; {skipped} student(s) already hold a usable code (use --reissue)" if skipped else ""),
        file=sys.stderr,
    )
