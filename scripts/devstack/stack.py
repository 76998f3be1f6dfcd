"""The production-like topology on one machine, started and stopped as one thing.

    python -m devstack.stack up [--fast-hash] [--replicas N] [--keycloak-nodes N]
    python -m devstack.stack status
    python -m devstack.stack down

    browser --TLS--> nginx --> service replicas (gunicorn) --> PostgreSQL, Redis
                           \\-> Keycloak nodes (production mode, one cluster) --> PostgreSQL
                           \\-> demo campus app

Everything listens on free loopback ports; browsers reach only nginx (HTTPS, a throwaway
CA). The state (ports, pids, URLs, secrets) is kept in `state.json` (mode 600) in the
work directory (`$UMPASS_STACK_DIR`, default `var/stack/`), so `status` and `down` work
from another process and tests attach with `Stack.attach()`.

For tests and benchmarks:

    with Stack.up(workdir, fast_hash=True) as stack:
        requests.get(stack.service_url + "/healthz", verify=stack.ca_file)
        stack.replicas[0].kill(); stack.replicas[0].start()
        stack.keycloak_nodes[1].kill(); stack.postgres.stop(); stack.redis.stop()
        stack.use_replicas(1)      # nginx routes to replica 1 only (benchmark comparison)
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import requests
from rich.console import Console

from devstack import keycloak as kc
from devstack import keycloak_cluster as cluster
from devstack import postgres as pg
from devstack import redis_server
from devstack.background import Background, BackgroundError
from devstack.nginx import Nginx, NginxError
from devstack.processes import free_port, port_in_use, tail, wait_until
from devstack.tls import Certificates, make_certificates
from provider.progress import progress_bar

REPO_ROOT = Path(__file__).resolve().parents[2]
STATE_FILE = "state.json"
MARKER = ".umpass-stack"  # a directory `up` may wipe: only one it made itself
ADMIN_USER = "admin"
READY_TIMEOUT = 300.0
CLUSTER_TIMEOUT = 120.0


class StackError(Exception):
    """A part of the stack did not start; the message says which and where to look."""


class StackPortTaken(StackError):
    """A port chosen free was taken by something else before its part could bind it."""


def default_workdir() -> Path:
    return Path(os.environ.get("UMPASS_STACK_DIR") or REPO_ROOT / "var" / "stack")


def _secret() -> str:
    return secrets.token_urlsafe(32)


class _Ports:
    """Distinct free loopback ports (the kernel may hand one out twice before it is bound)."""

    def __init__(self) -> None:
        self.taken: set[int] = set()

    def take(self, *, with_offset: int = 0) -> int:
        while True:
            port = free_port()
            if port in self.taken or port + with_offset in self.taken:
                continue
            if with_offset and (port + with_offset > 65535 or port_in_use(port + with_offset)):
                continue
            self.taken.update({port, port + with_offset})
            return port


@dataclass
class Stack:
    workdir: Path
    realm: str
    admin_password: str = field(repr=False)
    certificates: Certificates
    postgres: pg.RunningPostgres
    redis: redis_server.RunningRedis
    nginx: Nginx
    keycloak_nodes: list[cluster.KeycloakNode]
    replicas: list[Background]
    demo: Background
    mail: Background
    env: dict[str, str] = field(repr=False)  # the replicas' settings, on top of os.environ
    timings: dict[str, float] = field(default_factory=dict)
    keycloak_schema_cached: bool = False
    admin_user: str = ADMIN_USER

    # -- where things are ---------------------------------------------------------------

    @property
    def service_url(self) -> str:
        return self.nginx.url(self.nginx.service_port)

    @property
    def keycloak_url(self) -> str:
        return self.nginx.url(self.nginx.keycloak_port)

    @property
    def demo_url(self) -> str:
        """The demo campus app's home page."""
        return self.nginx.url(self.nginx.demo_port) + "/demo"

    @property
    def ca_file(self) -> Path:
        return self.certificates.ca_file

    @property
    def maildir(self) -> Path:
        """Every email the replicas sent (a Maildir: `mailbox.Maildir(stack.maildir)`)."""
        return self.workdir / "maildir"

    @property
    def sms_log(self) -> Path:
        """Every text message the replicas sent, one JSON object per line (nginx's log)."""
        return self.nginx.logs / "sms.jsonl"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    # -- starting -----------------------------------------------------------------------

    @classmethod
    def up(
        cls,
        workdir: Path | None = None,
        *,
        fast_hash: bool = False,
        replicas: int = 2,
        keycloak_nodes: int = 2,
        workers: int = 2,
        threads: int = 8,
        realm: str = "umpass",
        console: Console | None = None,
    ) -> Stack:
        """Start every part, in parallel where they do not depend on each other.

        `fast_hash` gives the realm a cheap password hash (tests only; benchmarks and
        deployments keep Keycloak's argon2). On any failure, what started is stopped; when
        the failure was a port taken between choosing it and binding it, everything starts
        again on other ports (three tries in all).
        """
        if replicas < 1 or keycloak_nodes < 1:
            raise StackError("at least one replica and one Keycloak node")
        workdir = (workdir or default_workdir()).resolve()
        for attempt in range(3):
            try:
                return cls._up_once(
                    workdir,
                    fast_hash=fast_hash,
                    replicas=replicas,
                    keycloak_nodes=keycloak_nodes,
                    workers=workers,
                    threads=threads,
                    realm=realm,
                    console=console,
                )
            except StackPortTaken as exc:
                if attempt == 2:
                    raise
                if console is not None:
                    console.print(f"[yellow]{exc}[/]: starting again on other ports")
        raise AssertionError("unreachable")

    @classmethod
    def _up_once(
        cls,
        workdir: Path,
        *,
        fast_hash: bool,
        replicas: int,
        keycloak_nodes: int,
        workers: int,
        threads: int,
        realm: str,
        console: Console | None,
    ) -> Stack:
        _fresh_workdir(workdir)
        started = time.monotonic()
        ports = _Ports()
        certs = make_certificates(workdir / "tls")
        logs = workdir / "logs"
        logs.mkdir()
        nginx = Nginx(
            directory=workdir / "nginx",
            certificates=certs,
            service_port=ports.take(),
            keycloak_port=ports.take(),
            demo_port=ports.take(),
            sms_port=ports.take(),
        )
        service_url = nginx.url(nginx.service_port)
        keycloak_url = nginx.url(nginx.keycloak_port)
        demo_url = nginx.url(nginx.demo_port) + "/demo"
        admin_password = _secret()
        mail_port = ports.take()
        env = {
            "UMPASS_ENV": "production",
            "UMPASS_SECRET_KEY": _secret(),
            "UMPASS_HMAC_KEY": _secret(),
            "UMPASS_TRUSTED_PROXIES": "1",
            "UMPASS_BASE_URL": service_url,
            "UMPASS_KEYCLOAK_URL": keycloak_url,
            "UMPASS_REALM": realm,
            "UMPASS_KC_CLIENT_SECRET": _secret(),
            "UMPASS_KC_PROVISIONER_SECRET": _secret(),
            "UMPASS_BROKER_CLIENT_SECRET": _secret(),
            "UMPASS_HELPDESK_CLIENT_SECRET": _secret(),
            "UMPASS_METRICS_TOKEN": _secret(),
            "UMPASS_DEMO_BASE_URL": demo_url,
            "REQUESTS_CA_BUNDLE": str(certs.ca_file),
            "SSL_CERT_FILE": str(certs.ca_file),
            "UMPASS_SMS_GATEWAY": "webhook",
            "UMPASS_SMS_WEBHOOK_URL": nginx.sms_url,
            "UMPASS_SMTP_HOST": "127.0.0.1",
            "UMPASS_SMTP_PORT": str(mail_port),
            "UMPASS_OIDC_KEY_FILE": str(workdir / "oidc-signing-key.pem"),
            "UMPASS_LOG_FORMAT": "json",
        }
        python = sys.executable
        umpass = str(Path(python).with_name("umpass"))
        replica_list = [
            Background(
                name=f"replica {i + 1}",
                argv=[
                    *(umpass, "serve", "--host", "127.0.0.1", "--port", str(port)),
                    *("--workers", str(workers), "--threads", str(threads)),
                ],
                port=port,
                log_file=logs / f"replica-{i + 1}.log",
                health_path="/healthz",
                env=env,
            )
            for i, port in enumerate(ports.take() for _ in range(replicas))
        ]
        nginx.service_upstreams = [r.port for r in replica_list]
        demo_port = ports.take()
        demo = Background(
            name="demo app",
            argv=[
                python,
                "-m",
                "devstack.demo_app",
                "--port",
                str(demo_port),
                "--url-scheme=https",
            ],
            port=demo_port,
            log_file=logs / "demo.log",
            health_path="/demo/",
            env={
                "UMPASS_KEYCLOAK_URL": keycloak_url,
                "UMPASS_REALM": realm,
                "REQUESTS_CA_BUNDLE": str(certs.ca_file),
                "PYTHONPATH": _pythonpath(),
            },
        )
        nginx.demo_upstream = demo_port
        mail = Background(
            name="mail catcher",
            argv=[
                *(python, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{mail_port}"),
                *("-c", "aiosmtpd.handlers.Mailbox", str(workdir / "maildir")),
            ],
            port=mail_port,
            log_file=logs / "mail.log",
        )
        nodes = [
            cluster.KeycloakNode(
                index=i,
                home=workdir / "keycloak" / f"node{i + 1}",
                http_port=ports.take(),
                management_port=ports.take(),
                # JGroups' failure detection listens 100 ports above the transport.
                cluster_port=ports.take(with_offset=100),
                log_file=logs / f"keycloak-{i + 1}.log",
            )
            for i in range(keycloak_nodes)
        ]
        nginx.keycloak_upstreams = [n.http_port for n in nodes]
        stack = cls(
            workdir=workdir,
            realm=realm,
            admin_password=admin_password,
            certificates=certs,
            postgres=pg.RunningPostgres(0, workdir / "postgres"),
            redis=redis_server.RunningRedis(0, workdir / "redis"),
            nginx=nginx,
            keycloak_nodes=nodes,
            replicas=replica_list,
            demo=demo,
            mail=mail,
            env=env,
        )
        try:
            with _Progress(console, total=11 + replicas + keycloak_nodes) as progress:
                stack.timings = progress.timings
                stack._start(progress, fast_hash=fast_hash)
            stack.timings["total"] = round(time.monotonic() - started, 1)
        except BaseException as exc:
            stack.down(keep_data=True)
            # Everything of ours is stopped: a chosen port still held is someone else's.
            taken = sorted(port for port in ports.taken if port_in_use(port))
            if taken and isinstance(exc, Exception):
                raise StackPortTaken(f"port(s) {taken} were taken while starting") from exc
            raise
        stack.save()
        return stack

    def _start(self, progress: _Progress, *, fast_hash: bool) -> None:
        pool = ThreadPoolExecutor(max_workers=6)
        try:
            # Independent of everything else: the proxy answers 502 until upstreams come.
            jobs = {
                "nginx": pool.submit(progress.timed, "nginx", self.nginx.start),
                "postgres": pool.submit(progress.timed, "postgres", self._start_postgres),
                "redis": pool.submit(progress.timed, "redis", self._start_redis),
                "mail": pool.submit(progress.timed, "mail catcher", self.mail.start),
                "homes": pool.submit(progress.timed, "keycloak homes", self._keycloak_homes),
            }
            _result(jobs["postgres"])
            _result(jobs["homes"])
            self._configure_nodes()
            # On an empty database (nothing cached yet) the first node makes the schema
            # alone: two nodes at once race to create Liquibase's own lock table and one
            # exits. With the cached schema they start together.
            alone = not self.keycloak_schema_cached
            for node in self.keycloak_nodes[:1] if alone else self.keycloak_nodes:
                node.start(wait=False)
            self.save()  # every pid is recorded before anything waits on it
            if alone:
                progress.timed(
                    "keycloak schema, first node alone", self.keycloak_nodes[0].wait_ready
                )
                for node in self.keycloak_nodes[1:]:
                    node.start(wait=False)
                self.save()
            node_jobs = [
                pool.submit(progress.timed, f"keycloak node {n.index + 1}", n.wait_ready)
                for n in self.keycloak_nodes
            ]
            schema = pool.submit(progress.timed, "service schema", self._db_upgrade)
            for job in [*jobs.values(), *node_jobs, schema]:
                _result(job)
            if not self.keycloak_schema_cached:
                progress.timed(
                    "keycloak schema kept for next time",
                    cluster.save_schema,
                    self.postgres,
                    "keycloak",
                )
            self.save()
            # The proof signs in to the master realm; the realm as code touches only ours.
            proof = pool.submit(progress.timed, "keycloak cluster", self._wait_cluster)
            progress.timed("realm as code", self._apply_realm, fast_hash)
            _result(proof)
            # Both replicas read one OIDC signing key: made once, before either starts.
            from provider.oidc.signing_key import load_signing_key

            load_signing_key(self.env["UMPASS_OIDC_KEY_FILE"])
            for part in [*self.replicas, self.demo]:
                part.start(wait=False)
            self.save()
            ready = [
                pool.submit(progress.timed, part.name, part.wait_ready, READY_TIMEOUT)
                for part in [*self.replicas, self.demo]
            ]
            for job in ready:
                _result(job)
        finally:
            # On a failure nothing waits for the other parts: `down` stops them next.
            pool.shutdown(wait=False, cancel_futures=True)
        self.save()
        progress.timed("through nginx", self._check_through_nginx)

    def _start_postgres(self) -> None:
        self.postgres = pg.start_throwaway(self.workdir / "postgres")
        self.postgres.create_database("keycloak")
        self.keycloak_schema_cached = cluster.restore_schema(self.postgres, "keycloak")
        self.env["DATABASE_URL"] = self.postgres.url()

    def _start_redis(self) -> None:
        self.redis = redis_server.start_throwaway(self.workdir / "redis")
        self.env["UMPASS_RATELIMIT_STORAGE"] = self.redis.url

    def _keycloak_homes(self) -> None:
        built = cluster.built_home()
        for node in self.keycloak_nodes:
            cluster.make_node_home(built, node.home)

    def _configure_nodes(self) -> None:
        for node in self.keycloak_nodes:
            node.configure(
                public_url=self.keycloak_url,
                jdbc_url=self.postgres.jdbc_url("keycloak"),
                db_user=self.postgres.user,
                ca_file=self.ca_file,
                admin_user=self.admin_user,
                admin_password=self.admin_password,
                service_url=self.service_url,
            )

    def _db_upgrade(self) -> None:
        _run([str(Path(sys.executable).with_name("umpass")), "db-upgrade"], self.env, "db-upgrade")

    def _wait_cluster(self) -> None:
        if not wait_until(self.cluster_formed, CLUSTER_TIMEOUT, poll=0.5):
            sizes = [n.cluster_size() for n in self.keycloak_nodes]
            raise StackError(
                f"the Keycloak nodes did not form one cluster within {CLUSTER_TIMEOUT:.0f} s "
                f"(views: {sizes}); see {self.logs}/keycloak-*.log"
            )
        if not self.prove_cluster():
            raise StackError(
                "a sign-in begun on one Keycloak node was unknown to the other: the nodes "
                f"do not share their caches; see {self.logs}/keycloak-*.log"
            )

    def _apply_realm(self, fast_hash: bool) -> None:
        env = {
            **self.env,
            "KEYCLOAK_ADMIN_USER": self.admin_user,
            "KEYCLOAK_ADMIN_PASSWORD": self.admin_password,
        }
        argv = [sys.executable, "-m", "keycloak_config.apply", "--yes", "--theme", "--with-demo"]
        _run(argv + (["--fast-hash"] if fast_hash else []), env, "the realm as code")

    def _check_through_nginx(self) -> None:
        checks = {
            "service": self.service_url + "/healthz",
            "keycloak": f"{self.keycloak_url}/realms/{self.realm}/.well-known/openid-configuration",
            "demo app": self.demo_url + "/",
        }
        for name, url in checks.items():
            status = _https_status(url, self.ca_file)
            if status != 200:
                raise StackError(f"the {name} through nginx answered {status} at {url}")

    # -- state --------------------------------------------------------------------------

    def save(self) -> None:
        state = {
            "workdir": str(self.workdir),
            "realm": self.realm,
            "admin_user": self.admin_user,
            "admin_password": self.admin_password,
            "certificates": {k: str(v) for k, v in self.certificates.__dict__.items()},
            "postgres": {"port": self.postgres.port, "workdir": str(self.postgres.workdir)},
            "redis": {"port": self.redis.port, "directory": str(self.redis.directory)},
            "nginx": {
                "directory": str(self.nginx.directory),
                "service_port": self.nginx.service_port,
                "keycloak_port": self.nginx.keycloak_port,
                "demo_port": self.nginx.demo_port,
                "sms_port": self.nginx.sms_port,
                "service_upstreams": self.nginx.service_upstreams,
                "keycloak_upstreams": self.nginx.keycloak_upstreams,
                "demo_upstream": self.nginx.demo_upstream,
            },
            "keycloak_nodes": [n.to_state() for n in self.keycloak_nodes],
            "replicas": [r.to_state() for r in self.replicas],
            "demo": self.demo.to_state(),
            "mail": self.mail.to_state(),
            "env": self.env,
            "timings": self.timings,
            "urls": {
                "service": self.service_url,
                "keycloak": self.keycloak_url,
                "demo": self.demo_url,
                "ca_file": str(self.ca_file),
            },
        }
        path = self.workdir / STATE_FILE
        temp = path.with_suffix(".tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds secrets
        with os.fdopen(fd, "w") as out:
            json.dump(state, out, indent=2)
        temp.replace(path)

    @classmethod
    def attach(cls, workdir: Path | None = None) -> Stack:
        """The stack another process started in `workdir`, from its state file."""
        workdir = (workdir or default_workdir()).resolve()
        try:
            state: dict[str, Any] = json.loads((workdir / STATE_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise StackError(f"no stack state in {workdir} (scripts/stack up first)") from exc
        certs = Certificates(**{k: Path(v) for k, v in state["certificates"].items()})
        ngx = state["nginx"]
        return cls(
            workdir=workdir,
            realm=state["realm"],
            admin_user=state["admin_user"],
            admin_password=state["admin_password"],
            certificates=certs,
            postgres=pg.RunningPostgres(
                int(state["postgres"]["port"]), Path(state["postgres"]["workdir"])
            ),
            redis=redis_server.RunningRedis(
                int(state["redis"]["port"]), Path(state["redis"]["directory"])
            ),
            nginx=Nginx(
                directory=Path(ngx["directory"]),
                certificates=certs,
                service_port=ngx["service_port"],
                keycloak_port=ngx["keycloak_port"],
                demo_port=ngx["demo_port"],
                sms_port=ngx["sms_port"],
                service_upstreams=ngx["service_upstreams"],
                keycloak_upstreams=ngx["keycloak_upstreams"],
                demo_upstream=ngx["demo_upstream"],
            ),
            keycloak_nodes=[cluster.KeycloakNode.from_state(n) for n in state["keycloak_nodes"]],
            replicas=[Background.from_state(r) for r in state["replicas"]],
            demo=Background.from_state(state["demo"]),
            mail=Background.from_state(state["mail"]),
            env=state["env"],
            timings=state.get("timings", {}),
        )

    # -- while it runs ------------------------------------------------------------------

    def cluster_formed(self) -> bool:
        """Every running Keycloak node sees all the running nodes in its cluster view."""
        return cluster.cluster_formed(self.keycloak_nodes)

    def prove_cluster(self) -> bool:
        """A sign-in begun on one running node is finished by another (True with one node)."""
        running = [n for n in self.keycloak_nodes if n.is_ready()]
        pairs = list(zip(running, running[1:] + running[:1], strict=True))
        return all(
            cluster.sign_in_handed_over(
                a,
                b,
                public_url=self.keycloak_url,
                username=self.admin_user,
                password=self.admin_password,
            )
            for a, b in pairs
            if a is not b
        )

    def use_replicas(self, count: int) -> None:
        """Route through nginx to the first `count` replicas only (a graceful reload)."""
        if not 1 <= count <= len(self.replicas):
            raise StackError(f"between 1 and {len(self.replicas)} replicas")
        self.nginx.set_upstreams(service=[r.port for r in self.replicas[:count]])
        self.save()

    def status(self) -> dict[str, bool]:
        """Each part and whether it answers right now."""
        parts: dict[str, bool] = {
            "postgres": self.postgres.is_running(),
            "redis": self.redis.ping(),
            "nginx": self.nginx.pid() is not None,
            "mail catcher": self.mail.is_ours() and self.mail.answers(),
        }
        for node in self.keycloak_nodes:
            parts[f"keycloak node {node.index + 1}"] = node.is_ready()
        parts["keycloak cluster"] = self.cluster_formed()
        for replica in self.replicas:
            parts[replica.name] = replica.is_ours() and replica.answers()
        parts["demo app"] = self.demo.is_ours() and self.demo.answers()
        parts["service via nginx"] = (
            _https_status(self.service_url + "/healthz", self.ca_file) == 200
        )
        well_known = f"{self.keycloak_url}/realms/{self.realm}/.well-known/openid-configuration"
        parts["keycloak via nginx"] = _https_status(well_known, self.ca_file) == 200
        return parts

    # -- stopping -----------------------------------------------------------------------

    def down(self, *, keep_data: bool = False) -> None:
        """Stop every part this stack started (and only those: pids are checked first).

        The logs stay in `logs/`; the databases, Keycloak homes and keys go unless `keep_data`.
        """
        with ThreadPoolExecutor(max_workers=4) as pool:
            front = [pool.submit(p.stop, 15.0) for p in [self.demo, *self.replicas]]
            front.append(pool.submit(self.nginx.stop))
            for job in front:
                job.result()
            # A clean shutdown lets each node leave the cluster; then the database.
            for job in [pool.submit(n.stop) for n in self.keycloak_nodes]:
                job.result()
        self.mail.stop(5.0)
        self.redis.stop()
        self.postgres.stop()
        (self.workdir / STATE_FILE).unlink(missing_ok=True)
        if not keep_data:
            # Data and private keys go; logs, mail and the nginx config stay to read.
            for part in ("postgres", "redis", "keycloak", "tls"):
                shutil.rmtree(self.workdir / part, ignore_errors=True)
            Path(self.env["UMPASS_OIDC_KEY_FILE"]).unlink(missing_ok=True)

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()


# -- helpers --------------------------------------------------------------------------


def _fresh_workdir(workdir: Path) -> None:
    """An empty work directory; an earlier stack's is wiped, anything else refused."""
    if (workdir / STATE_FILE).exists():
        raise StackError(f"a stack already runs from {workdir}: scripts/stack down first")
    if workdir.exists() and any(workdir.iterdir()):
        if not (workdir / MARKER).exists():
            raise StackError(f"{workdir} is not empty and not a stack's work directory")
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / MARKER).touch()


def _pythonpath() -> str:
    extra = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join(p for p in (str(REPO_ROOT / "scripts"), str(REPO_ROOT), extra) if p)


def _run(argv: list[str], env: dict[str, str], what: str) -> None:
    result = subprocess.run(
        argv,
        env={**os.environ, **env, "PYTHONPATH": _pythonpath()},
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if result.returncode != 0:
        output = tail(result.stdout + result.stderr, 3)
        raise StackError(f"{what} failed (exit {result.returncode}): {output}")


def _https_status(url: str, ca_file: Path) -> int:
    try:
        return requests.get(url, verify=str(ca_file), timeout=10).status_code
    except requests.RequestException:
        return 0


def _result(job: Future[Any]) -> Any:
    try:
        return job.result()
    except (
        pg.PostgresError,
        redis_server.RedisError,
        NginxError,
        BackgroundError,
        kc.KeycloakStartError,
    ) as exc:
        raise StackError(str(exc)) from exc


class _Progress:
    """One bar for the whole start, and a line per part with how long it took."""

    def __init__(self, console: Console | None, total: int) -> None:
        self.console = console or Console(stderr=True)
        self.bar = progress_bar(console=self.console, transient=True)
        self.task = self.bar.add_task("starting the stack", total=total)
        self.started = time.monotonic()
        self.timings: dict[str, float] = {}

    def __enter__(self) -> _Progress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def timed(self, name: str, step: Callable[..., Any], *args: Any) -> Any:
        began = time.monotonic()
        value = step(*args)
        took = time.monotonic() - began
        self.timings[name] = round(took, 1)
        self.bar.advance(self.task)
        at = time.monotonic() - self.started
        self.console.print(f"[{at:5.1f} s] {name} ({took:.1f} s)", highlight=False)
        return value


# -- command line ---------------------------------------------------------------------


def _print_urls(stack: Stack, console: Console) -> None:
    console.print(
        f"""
  UMPASS Activation:  {stack.service_url}/activate/
  Help-desk console:  {stack.service_url}/helpdesk/
  Keycloak (realm):   {stack.keycloak_url}/realms/{stack.realm}/account/
  Keycloak admin:     {stack.keycloak_url}/admin/  (user {stack.admin_user}, password in
                      {stack.workdir / STATE_FILE})
  Demo campus app:    {stack.demo_url}/
  Trust this CA:      {stack.ca_file}
  Emails, SMS:        {stack.maildir}/new/, {stack.sms_log}
  Logs:               {stack.logs}/
  Replicas (direct):  {", ".join(r.direct_url for r in stack.replicas)}
  Keycloak nodes:     {", ".join(n.direct_url for n in stack.keycloak_nodes)}
""",
        highlight=False,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/stack", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--workdir", type=Path, help="default: $UMPASS_STACK_DIR or var/stack")
    parser.add_argument("--fast-hash", action="store_true", help="cheap password hash (tests)")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--keycloak-nodes", type=int, default=2)
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    try:
        if args.command == "up":
            stack = Stack.up(
                args.workdir,
                fast_hash=args.fast_hash,
                replicas=args.replicas,
                keycloak_nodes=args.keycloak_nodes,
                console=console,
            )
            _print_urls(stack, console)
            console.print(f"The stack started in {stack.timings['total']:.1f} s.")
            return 0
        stack = Stack.attach(args.workdir)
        if args.command == "down":
            stack.down()
            console.print(f"stopped the stack in {stack.workdir} (logs kept in {stack.logs})")
            return 0
        parts = stack.status()
        width = max(len(name) for name in parts)
        for name, ok in parts.items():
            print(f"{name:<{width}}  {'answers' if ok else 'DOWN'}")
        _print_urls(stack, console)
        return 0 if all(parts.values()) else 1
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
