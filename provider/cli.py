"""The `umpass` command: run the service and look after it.

    umpass check              configuration valid, Keycloak and the database reachable
    umpass serve [--port N]   run the service (waitress) after the same checks
    umpass seed-demo [--count N]
                              create a few pending demo students in Keycloak

Every failure is one line on stderr that says what to fix, and a non-zero exit.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass

from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy.exc import SQLAlchemyError

from provider import db
from provider.config import ConfigError, Settings, load_settings
from provider.keycloak import (
    ACTIVATION_STATE,
    PHONE_NUMBER,
    STATE_PENDING,
    GatewayError,
    IdentityServiceUnavailable,
    KeycloakGateway,
    ServiceCredentialRejected,
)


class CommandError(Exception):
    """A one-line, actionable reason the command cannot go on."""


@dataclass(frozen=True)
class DemoStudent:
    username: str
    first_name: str
    last_name: str
    email: str
    phone: str


DEMO_STUDENTS = [
    DemoStudent("dc12345", "Ana", "Lei", "ana.lei@example.edu", "+85362345678"),
    DemoStudent("dc23456", "Wai Man", "Chan", "waiman.chan@example.edu", "+85366543210"),
    DemoStudent("dc34567", "João", "Sousa", "joao.sousa@example.edu", "+85368881234"),
]


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        raise CommandError(str(exc)) from exc


def check_services(settings: Settings) -> KeycloakGateway:
    """The gateway, once Keycloak and the database are known to answer."""
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
    try:
        db.check(db.make_engine(settings.database_url))
    except SQLAlchemyError as exc:
        raise CommandError(
            f"cannot open the database ({type(exc).__name__}): check DATABASE_URL"
        ) from exc
    return gateway


def cmd_check(_args: argparse.Namespace) -> None:
    settings = _settings()
    check_services(settings)
    print(f"ok: Keycloak {settings.keycloak.url} realm {settings.keycloak.realm}, database ready")


def cmd_serve(args: argparse.Namespace) -> None:
    import socket

    from waitress import serve

    from provider import create_app

    settings = _settings()
    check_services(settings)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((args.host, args.port))
        except OSError as exc:
            raise CommandError(
                f"cannot listen on {args.host}:{args.port} ({exc.strerror}): "
                "stop what uses it or pass --port"
            ) from exc
    app = create_app(settings)
    print(f"UMPASS Activation on http://{args.host}:{args.port}/", file=sys.stderr, flush=True)
    serve(app, host=args.host, port=args.port, threads=args.threads, ident="umpass")


def cmd_seed_demo(args: argparse.Namespace) -> None:
    settings = _settings()
    gateway = check_services(settings)
    students = DEMO_STUDENTS[: args.count]
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
        transient=True,
    ) as progress:
        task = progress.add_task("seeding demo students", total=len(students))
        for student in students:
            # Created pending in one call: there is never an account without a state.
            gateway.create_user(
                student.username,
                email=student.email,
                first_name=student.first_name,
                last_name=student.last_name,
                attributes={ACTIVATION_STATE: [STATE_PENDING], PHONE_NUMBER: [student.phone]},
            )
            progress.advance(task)
    for student in students:
        print(f"  {student.username}  {student.first_name} {student.last_name}")


COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "check": cmd_check,
    "serve": cmd_serve,
    "seed-demo": cmd_seed_demo,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="umpass", description="UMPASS Activation")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="check configuration, Keycloak and the database")
    serve = sub.add_parser("serve", help="run the service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=5000)
    serve.add_argument("--threads", type=int, default=8)
    seed = sub.add_parser("seed-demo", help="create pending demo students")
    seed.add_argument("--count", type=int, default=len(DEMO_STUDENTS))
    args = parser.parse_args(argv)
    # The commands print their own one-line errors; `serve` installs real logging.
    logging.getLogger().addHandler(logging.NullHandler())
    try:
        COMMANDS[args.command](args)
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except GatewayError as exc:
        print(f"error: Keycloak refused the operation ({exc})", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
