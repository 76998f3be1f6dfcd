"""What every benchmark starts from: a throwaway Keycloak, a work folder, an environment
with fresh secrets for the realm and the service, and ways to read what processes used."""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from keycloak import KeycloakAdmin, KeycloakOpenIDConnection
from keycloak.exceptions import KeycloakError

from devstack import keycloak as kc_server
from provider.activation_codes import IssuedCode
from provider.services import Services
from provider.students import NewStudent, create_pending_student

ADMIN_USER = "admin"


@dataclass(frozen=True)
class BenchStack:
    keycloak: kc_server.RunningKeycloak
    admin_password: str
    workdir: Path
    env: dict[str, str]  # the realm's and the service's settings, on top of os.environ


@contextmanager
def bench_stack(realm: str = "umpass-bench", **extra_env: str) -> Iterator[BenchStack]:
    """Keycloak (the test instance, free ports) for the benchmark's lifetime."""
    admin_password = secrets.token_urlsafe(16)
    running = kc_server.start_throwaway(admin_password)
    try:
        yield _bench(running, ADMIN_USER, admin_password, realm, extra_env)
    finally:
        kc_server.stop("test")


@contextmanager
def bench_realm_on(
    url: str, admin_user: str, admin_password: str, **extra_env: str
) -> Iterator[BenchStack]:
    """A Keycloak that already runs (a benchmark that needs no Keycloak of its own):
    a realm named for this run, deleted afterwards."""
    realm = f"umpass-bench-{secrets.token_hex(3)}"
    running = kc_server.RunningKeycloak("external", 0, url, url, Path(os.devnull))
    try:
        yield _bench(running, admin_user, admin_password, realm, extra_env)
    finally:
        admin = KeycloakAdmin(
            connection=KeycloakOpenIDConnection(
                server_url=url,
                username=admin_user,
                password=admin_password,
                realm_name="master",
                client_id="admin-cli",
            )
        )
        with suppress(KeycloakError):  # never applied: nothing to delete
            admin.delete_realm(realm)


def _bench(
    running: kc_server.RunningKeycloak,
    admin_user: str,
    admin_password: str,
    realm: str,
    extra_env: dict[str, str],
) -> BenchStack:
    workdir = Path(tempfile.mkdtemp(prefix="umpass-bench-"))
    env = {
        **os.environ,
        "UMPASS_KEYCLOAK_URL": running.url,
        "KEYCLOAK_ADMIN_USER": admin_user,
        "KEYCLOAK_ADMIN_PASSWORD": admin_password,
        "UMPASS_REALM": realm,
        "UMPASS_KC_CLIENT_SECRET": secrets.token_urlsafe(24),
        "UMPASS_KC_PROVISIONER_SECRET": secrets.token_urlsafe(24),
        "UMPASS_BROKER_CLIENT_SECRET": secrets.token_urlsafe(24),
        "UMPASS_HELPDESK_CLIENT_SECRET": secrets.token_urlsafe(24),
        "UMPASS_SECRET_KEY": secrets.token_urlsafe(32),
        "UMPASS_HMAC_KEY": secrets.token_urlsafe(32),
        "DATABASE_URL": f"sqlite:///{workdir}/bench.db",
        "UMPASS_LOG_LEVEL": "WARNING",
        # A developer's machine: random keys allowed, text messages to a file.
        "UMPASS_ENV": "development",
        "UMPASS_SMS_OUTBOX": f"{workdir}/sms-outbox.jsonl",
        **extra_env,
    }
    return BenchStack(running, admin_password, workdir, env)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def process_tree(root: int) -> list[int]:
    """`root` and every process below it (a gunicorn master and its workers, PostgreSQL's
    postmaster and its backends)."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(proc.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU used so far by these processes, their threads and the children
    they have reaped (a PostgreSQL backend that ended still counts in its postmaster)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended in between
        total += sum(int(f) for f in fields[11:15]) / ticks  # utime stime cutime cstime
    return total


def process_group(group: int) -> list[int]:
    """Every process in the group (Keycloak's launcher script and its JVM)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if os.getpgid(int(proc.name)) == group:
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def enrol_with_proven_contacts(svc: Services, student: NewStudent) -> IssuedCode:
    """A pending student whose email and phone are proven already: the benchmarks measure
    activation, not code delivery, so the contacts step is a "keep" and nothing more."""
    issued = create_pending_student(svc, student)
    user = svc.keycloak.find_user(issued.user_id)
    if user is None:
        raise RuntimeError(f"{issued.user_id} vanished from Keycloak")
    svc.keycloak.set_email(user.id, student.email, verified=True)
    svc.keycloak.set_phone(user.id, student.phone, verified=True)
    return issued
