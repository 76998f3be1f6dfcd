"""The `umpass` command: run the service and look after it.

    umpass check              configuration valid, Keycloak and the database reachable
    umpass serve [--port N] [--workers N] [--threads N]
                              run the service (gunicorn) after the same checks
    umpass db-upgrade         create or migrate the service's database (Alembic)
    umpass create-student ... a pending student with proofing data; prints its code once
    umpass revoke-code --user-id ID
                              revoke the student's usable activation codes
    umpass seed-demo [--count N] [--fresh]
                              codes for the pending demo students, new demo students until
                              N are pending; --fresh: N new ones (development)
    umpass import-intake ...  a whole intake from a Registry CSV or LDAP (provider/intake)
    umpass issue-codes ...    codes for an intake or students: mail-merge CSV and letters
    umpass purge [--dry-run]  delete expired flows, codes, tokens, throttle rows, old audit,
                              delivered events
    umpass realm-check [--mail-to ADDR]
                              the realm against keycloak_config/, stored for the web's
                              realm-health page: exit 1 on drift, an email when new drift
                              appears (provider/realm_health; the timer's host only)
    umpass policies           every policy version: current or not, accepted, still to accept
    umpass publish-policy POLICY VERSION
                              make a newer version current (audited): students activating
                              from then on accept it
    umpass backfill-policy-evidence
                              the acceptances on activated students' accounts kept as the
                              service's evidence too (for students activated before it kept
                              its own); resumable
    umpass deliver [--once] [--poll S] [--metrics-port N]
                              send the outbox's events to UMPASS_WEBHOOK_ENDPOINTS, signed,
                              retried (provider/events); several may run at once

Every failure is one line on stderr that says what to fix, and a non-zero exit.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from collections.abc import Callable
from datetime import date
from urllib.parse import urlsplit

from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from provider import demo_students, limits
from provider.activation_codes import EnrolmentError, IssuedCode, revoke_codes
from provider.config import ConfigError, Settings, load_settings
from provider.csrf import origin_of
from provider.intake import commands as intake
from provider.keycloak import (
    GatewayError,
    IdentityServiceUnavailable,
    KeycloakGateway,
    ServiceCredentialRejected,
)
from provider.policies import documents, evidence
from provider.policies.published import PublishRefused, current_versions, publish
from provider.progress import progress_bar
from provider.proofing import normalize_id_last4, normalize_user_id
from provider.services import Services
from provider.storage import engine as db
from provider.storage import migrate
from provider.storage.engine import make_engine
from provider.students import NewStudent, NotAPendingStudent, create_pending_student


class CommandError(Exception):
    """A one-line, actionable reason the command cannot go on."""


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        raise CommandError(str(exc)) from exc


def check_services(settings: Settings) -> KeycloakGateway:
    """The gateway, once Keycloak, the database and the limit store are known to answer."""
    gateway = KeycloakGateway(settings.keycloak)
    try:
        gateway.ping()
    except ServiceCredentialRejected as exc:
        raise CommandError(
            f"Keycloak at {settings.keycloak.url} refused client "
            f"{settings.keycloak.client_id!r} in realm {settings.keycloak.realm!r}: "
            "check UMPASS_KC_CLIENT_ID, UMPASS_KC_CLIENT_SECRET and UMPASS_REALM"
        ) from exc
    except IdentityServiceUnavailable as exc:
        raise CommandError(
            f"cannot use Keycloak at {settings.keycloak.url} ({exc}): "
            "is it running? (scripts/keycloak start) Is UMPASS_KEYCLOAK_URL right?"
        ) from exc
    _check_keycloak_hostname(settings, gateway)
    try:
        db.check(db.make_engine(settings.database_url))
    except SQLAlchemyError as exc:
        raise CommandError(
            f"cannot open the database at {_where(settings.database_url)} "
            f"({type(exc).__name__}): is it running? Check DATABASE_URL"
        ) from exc
    _check_limit_store(settings)
    return gateway


def _where(url: str) -> str:
    """A database or Redis URL as scheme://host:port/name only: user names, passwords and
    query options (which may carry a password too) never reach a message."""
    parts = urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


def _check_keycloak_hostname(settings: Settings, gateway: KeycloakGateway) -> None:
    """Keycloak must call itself by the address browsers are sent to, or every sign-in
    through it fails on redirect URIs and issuers."""
    public = settings.oidc.broker_redirect_uri.split("/realms/", 1)[0]
    expected = f"{public}/realms/{settings.keycloak.realm}"
    try:
        actual = gateway.issuer()
    except IdentityServiceUnavailable as exc:
        raise CommandError(f"{exc}: is UMPASS_KEYCLOAK_URL right?") from exc
    if not _same_address(actual, expected):
        raise CommandError(
            f"Keycloak names its realm {actual} but browsers are sent to {expected}: set "
            "Keycloak's --hostname to the address browsers use, or UMPASS_KEYCLOAK_URL "
            "(or UMPASS_BROKER_REDIRECT_URI when the service reaches Keycloak by another name)"
        )


def _same_address(a: str, b: str) -> bool:
    """Equal as browsers see them: case of scheme and host, default ports, trailing slash."""
    return origin_of(a) == origin_of(b) and urlsplit(a).path.rstrip("/") == urlsplit(b).path.rstrip(
        "/"
    )


def _check_limit_store(settings: Settings) -> None:
    if settings.ratelimit_storage.startswith("memory"):
        return
    if not limits.store_answers(settings.ratelimit_storage):
        raise CommandError(
            f"the rate-limit store at {_where(settings.ratelimit_storage)} does not answer: "
            "is Redis running? Check UMPASS_RATELIMIT_STORAGE"
        )


def cmd_check(_args: argparse.Namespace) -> None:
    settings = _settings()
    check_services(settings)
    print(f"ok: Keycloak {settings.keycloak.url} realm {settings.keycloak.realm}, database ready")


def cmd_serve(args: argparse.Namespace) -> None:
    import socket

    from provider import wsgi_server
    from provider.oidc.signing_key import load_signing_key

    settings = _settings()
    in_memory = settings.ratelimit_storage.startswith("memory")
    if args.workers is None:
        args.workers = 1 if in_memory else 2
    if args.workers > 1 and in_memory:
        raise CommandError(
            "UMPASS_RATELIMIT_STORAGE=memory:// counts in each process: with --workers "
            f"{args.workers} every limit would be {args.workers} times as loose; use Redis "
            "or --workers 1"
        )
    check_services(settings)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As gunicorn binds: connections a killed predecessor left in TIME_WAIT don't count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((args.host, args.port))
        except OSError as exc:
            raise CommandError(
                f"cannot listen on {args.host}:{args.port} ({exc.strerror}): "
                "stop what uses it or pass --port"
            ) from exc
    if settings.oidc.enabled:
        load_signing_key(settings.oidc.signing_key_file)  # once, before workers race for it
    print(
        f"UMPASS Activation on http://{args.host}:{args.port}/ for {settings.base_url}/ "
        f"({args.workers} worker(s) x {args.threads} threads)",
        file=sys.stderr,
        flush=True,
    )
    wsgi_server.run(
        settings, host=args.host, port=args.port, workers=args.workers, threads=args.threads
    )


def cmd_db_upgrade(_args: argparse.Namespace) -> None:
    settings = _settings()
    try:
        migrate.upgrade(make_engine(settings.database_url))
    except SQLAlchemyError as exc:
        raise CommandError(
            f"cannot migrate the database ({type(exc).__name__}): check DATABASE_URL"
        ) from exc
    print("database schema up to date")


def _create(students: list[NewStudent]) -> list[IssuedCode]:
    settings = _settings()
    gateway = check_services(settings)
    svc = Services.assemble(settings, gateway=gateway)
    issued: list[IssuedCode] = []
    with progress_bar() as progress:
        task = progress.add_task("creating students", total=len(students))
        for student in students:
            try:
                issued.append(create_pending_student(svc, student))
            except NotAPendingStudent:
                print(
                    f"  {student.user_id}: an account that is not pending (active or staff) "
                    "exists, left as it is; no code issued",
                    file=sys.stderr,
                )
            except (ValueError, EnrolmentError) as exc:
                raise CommandError(f"{student.user_id}: {exc}") from exc
            progress.advance(task)
    return issued


def _print_codes(issued: list[IssuedCode]) -> None:
    table = Table("user ID", "activation code", "expires", title="Shown once: not stored")
    for code in issued:
        table.add_row(code.user_id, code.code, code.expires_at.strftime("%Y-%m-%d"))
    Console().print(table)


def cmd_create_student(args: argparse.Namespace) -> None:
    try:
        dob = date.fromisoformat(args.date_of_birth)
    except ValueError:
        raise CommandError("--date-of-birth must be YYYY-MM-DD") from None
    student = NewStudent(
        args.user_id,
        args.first_name,
        args.last_name,
        args.email,
        args.phone,
        dob,
        args.id_number,
        args.intake,
    )
    _print_codes(_create([student]))


def cmd_revoke_code(args: argparse.Namespace) -> None:
    settings = _settings()
    svc = Services.assemble(settings)
    user_id = normalize_user_id(args.user_id, settings.user_id_length)
    if user_id is None:
        raise CommandError(f"{args.user_id!r} is not a user ID")
    with svc.sessions.begin() as session:
        count = revoke_codes(session, user_id, actor=f"cli:{getpass.getuser()}")
    print(f"{user_id}: {count} code(s) revoked")


def cmd_seed_demo(args: argparse.Namespace) -> None:
    if args.count < 1:
        raise CommandError("--count must be at least 1")
    settings = _settings()
    svc = Services.assemble(settings, gateway=check_services(settings))
    try:
        report = demo_students.seed(svc, wanted=args.count, fresh=args.fresh)
    except IdentityServiceUnavailable as exc:
        raise CommandError(
            f"Keycloak at {settings.keycloak.url} stopped answering ({exc}): "
            "run `umpass seed-demo` again once it is up"
        ) from exc
    for outcome in report.left:
        print(
            f"  {outcome.student.user_id}: {outcome.reason}, {outcome.state.value}",
            file=sys.stderr,
        )
    for outcome in report.failed:
        print(f"  {outcome.student.user_id}: failed: {outcome.reason}", file=sys.stderr)
    _print_demo_codes(report.pending)
    if len(report.pending) < args.count:
        raise CommandError(
            f"only {len(report.pending)} of {args.count} demo students are pending "
            "(reasons above): run `umpass seed-demo --fresh` for new ones"
        )


def _print_demo_codes(pending: list[demo_students.Outcome]) -> None:
    table = Table(
        "user ID",
        "activation code",
        "date of birth\n(day month year)",
        "ID number\n(last 4)",
        "email",
        title="Demo students ready to activate (codes shown once; development only)",
    )
    for outcome in pending:
        student, issued = outcome.student, outcome.code
        if issued is None:  # pending outcomes carry their code
            continue
        table.add_row(
            student.user_id,
            issued.code,
            student.date_of_birth.strftime("%d %m %Y"),
            normalize_id_last4(student.id_number) or "",
            student.email,
        )
    Console().print(table)


def cmd_purge(args: argparse.Namespace) -> None:
    from provider import purge

    settings = _settings()
    try:
        retention = purge.Retention.from_env()
    except ConfigError as exc:
        raise CommandError(str(exc)) from exc
    try:
        report = purge.purge(make_engine(settings.database_url), retention, dry_run=args.dry_run)
    except purge.PurgeBusy:
        print("another purge is running: nothing to do here")
        return
    except SQLAlchemyError as exc:
        raise CommandError(
            f"cannot purge the database ({type(exc).__name__}): is it running, "
            "is DATABASE_URL right, has `umpass db-upgrade` run?"
        ) from exc
    title = "Would delete (dry run)" if report.dry_run else "Deleted"
    table = Table("kind", "rows", "goes when", title=title)
    for kind, count in report.counts.items():
        table.add_row(kind, str(count), report.rules[kind])
    Console().print(table)


def cmd_realm_check(args: argparse.Namespace) -> int:
    # The monitor's secret is read here, by the timer's command, and nowhere in the web
    # service (provider/realm_health/monitor.py says why).
    from provider.realm_health import command
    from provider.realm_health.monitor import load_monitor_settings
    from provider.realm_health.report import check_realm

    settings = _settings()
    try:
        monitor = load_monitor_settings()
    except ConfigError as exc:
        raise CommandError(str(exc)) from exc
    svc = Services.assemble(settings)
    report = check_realm(settings, monitor)
    print(command.render(report))
    try:
        status, note = command.run(
            report, svc.sessions, svc.mailer, args.mail_to or monitor.alert_email
        )
    except SQLAlchemyError as exc:
        raise CommandError(
            f"cannot store the result ({type(exc).__name__}): is the database running, "
            "is DATABASE_URL right, has `umpass db-upgrade` run?"
        ) from exc
    finally:
        svc.engine.dispose()
    print(note)
    return status


def _policy_services() -> Services:
    svc = Services.assemble(_settings())
    try:
        with svc.reads() as db:
            current_versions(db)
    except SQLAlchemyError as exc:
        raise CommandError(
            f"cannot read the database ({type(exc).__name__}): is it running, "
            "is DATABASE_URL right, has `umpass db-upgrade` run?"
        ) from exc
    return svc


def cmd_policies(_args: argparse.Namespace) -> None:
    svc = _policy_services()
    with svc.reads() as db:
        rows = evidence.counts(db, documents())
    table = Table("policy", "version", "status", "accepted", "still to accept", title="Policies")
    for row in rows:
        status = "current" if row.current else "-"
        due = "-" if row.still_due is None else str(row.still_due)
        table.add_row(row.policy.id, row.policy.version, status, str(row.accepted), due)
    Console().print(table)


def cmd_backfill_policy_evidence(_args: argparse.Namespace) -> None:
    from provider.policies import backfill

    settings = _settings()
    svc = Services.assemble(settings, gateway=check_services(settings))
    total = len(backfill.activated_students(svc))
    with progress_bar() as progress:
        task = progress.add_task("accounts read", total=total)
        done = backfill.backfill(svc, lambda: progress.advance(task))
    print(
        f"{done.students} activated students read: {done.kept} acceptances added, "
        f"{done.missing} accounts no longer in Keycloak"
    )


def cmd_publish_policy(args: argparse.Namespace) -> None:
    svc = _policy_services()
    try:
        done = publish(svc.sessions, args.policy, args.version, f"cli:{getpass.getuser()}")
    except PublishRefused as exc:
        raise CommandError(str(exc)) from None
    print(
        f"{done.policy.key} is published: students activating from now on accept it, "
        "and active students the next time they sign in"
    )
    # The sign-in half needs the realm's policy gate (keycloak_addon): said, since a realm
    # without the JAR lets active students on without asking.
    print(
        "note: active students are asked at sign-in where the browser flow has the "
        "umpass-policy-gate step (keycloak_config.apply says whether it does)"
    )


def cmd_deliver(args: argparse.Namespace) -> None:
    # Only the database and the endpoints: the deliver host holds no Keycloak secret.
    import os
    import signal
    import threading

    from prometheus_client import start_http_server
    from sqlalchemy.orm import sessionmaker

    from provider.events import endpoints
    from provider.events.deliver import REGISTRY, Deliverer

    try:
        settings = endpoints.load(os.environ)
    except ConfigError as exc:
        raise CommandError(str(exc)) from exc
    if not settings.endpoints:
        raise CommandError("no webhook endpoints: set UMPASS_WEBHOOK_ENDPOINTS")
    deliverer = Deliverer(settings, sessionmaker(make_engine(settings.database_url)))
    if args.once:
        while deliverer.run_once():
            pass
        return
    if args.metrics_port:
        start_http_server(args.metrics_port, addr="127.0.0.1", registry=REGISTRY)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    deliverer.run(stop, poll=args.poll)


COMMANDS: dict[str, Callable[[argparse.Namespace], int | None]] = {
    "policies": cmd_policies,
    "publish-policy": cmd_publish_policy,
    "backfill-policy-evidence": cmd_backfill_policy_evidence,
    "check": cmd_check,
    "serve": cmd_serve,
    "seed-demo": cmd_seed_demo,
    "db-upgrade": cmd_db_upgrade,
    "create-student": cmd_create_student,
    "revoke-code": cmd_revoke_code,
    "purge": cmd_purge,
    "realm-check": cmd_realm_check,
    "deliver": cmd_deliver,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="umpass", description="UMPASS Activation")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="check configuration, Keycloak and the database")
    serve = sub.add_parser("serve", help="run the service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=5000)
    serve.add_argument(
        "--workers", type=int, help="processes (gunicorn); default 2, or 1 with memory:// limits"
    )
    serve.add_argument("--threads", type=int, default=8, help="threads per process")
    sub.add_parser("db-upgrade", help="create or migrate the database")
    create = sub.add_parser("create-student", help="create a pending student with a code")
    for name in (
        "user-id",
        "first-name",
        "last-name",
        "email",
        "phone",
        "date-of-birth",
        "id-number",
    ):
        create.add_argument(f"--{name}", required=True)
    create.add_argument("--intake")
    revoke = sub.add_parser("revoke-code", help="revoke a student's usable activation codes")
    revoke.add_argument("--user-id", required=True)
    seed = sub.add_parser(
        "seed-demo", help="codes for pending demo students; new ones until enough are pending"
    )
    seed.add_argument("--count", type=int, default=3, help="pending students wanted")
    seed.add_argument(
        "--fresh", action="store_true", help="make COUNT new demo students (new user IDs)"
    )
    purge = sub.add_parser("purge", help="delete rows past their retention (cron-safe)")
    purge.add_argument("--dry-run", action="store_true", help="count only, delete nothing")
    realm_check = sub.add_parser(
        "realm-check", help="the realm against keycloak_config/ (exit 1 on drift; cron-safe)"
    )
    realm_check.add_argument(
        "--mail-to", help="alert address (default UMPASS_REALM_ALERT_EMAIL)", default=""
    )
    sub.add_parser("policies", help="every policy version, accepted and still to accept")
    publishing = sub.add_parser("publish-policy", help="make a newer policy version current")
    publishing.add_argument("policy", help="the policy id, e.g. it-acceptable-use")
    publishing.add_argument("version", help="the version, e.g. 2027-01")
    sub.add_parser(
        "backfill-policy-evidence",
        help="keep the acceptances on activated students' accounts as evidence (resumable)",
    )
    deliver = sub.add_parser("deliver", help="send the outbox's events to the webhook endpoints")
    deliver.add_argument("--once", action="store_true", help="until nothing is due, then exit")
    deliver.add_argument("--poll", type=float, default=1.0, help="seconds between idle rounds")
    deliver.add_argument("--metrics-port", type=int, help="serve Prometheus on 127.0.0.1:N")
    intake_commands: dict[str, Callable] = {}
    intake.add_commands(sub, intake_commands)
    args = parser.parse_args(argv)
    # The commands print their own one-line errors; `serve` installs real logging.
    logging.getLogger().addHandler(logging.NullHandler())
    try:
        if args.command in intake_commands:
            intake_commands[args.command](args, Services.assemble(_settings()))
        else:
            status = COMMANDS[args.command](args)
            if status:
                return status
    except (CommandError, intake.IntakeCommandError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except GatewayError as exc:
        print(f"error: Keycloak refused the operation ({exc})", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
