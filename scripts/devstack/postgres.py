"""A throwaway PostgreSQL server on loopback, for the suite, the stack and development.

    python -m devstack.postgres start [--port N]
    python -m devstack.postgres stop

Debian's PostgreSQL 15 (`/usr/lib/postgresql/15/bin`, `apt-get install postgresql`; its
system service is not used). `initdb` makes a fresh cluster in a work directory, owned
by the `postgres` user when we run as root (PostgreSQL refuses to run as root), with one
superuser `umpass` and `trust` authentication: the server listens on 127.0.0.1 only and
lives as long as the run. Durability is traded for speed (`fsync=off`): the cluster is
thrown away, and a process crash (as opposed to a machine crash) loses nothing anyway.

    pg = start_throwaway()
    pg.create_database("keycloak")
    engine = create_engine(pg.url())   # postgresql+psycopg://umpass@127.0.0.1:PORT/umpass
    pg.restart()                       # same data, same port (fault tests)
    pg.destroy()                       # stop and delete the work directory
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg

from devstack.processes import (
    command_line,
    log_tail,
    on_free_port,
    read_pidfile,
    running,
    tail,
    terminate,
    wait_gone,
)

BIN_DIR = Path(os.environ.get("UMPASS_PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "umpass"
DEFAULT_DATABASE = "umpass"
START_TIMEOUT = 30
STOP_TIMEOUT = 15
INSTALL_HINT = "apt-get install -y postgresql (Debian's PostgreSQL 15)"
# Settings for a server nobody keeps: no fsync, and room for two Keycloak nodes, two
# service replicas and the tests' own connections.
SERVER_OPTIONS = (
    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
)
_DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresError(Exception):
    """PostgreSQL could not be set up, started or stopped; the message says what to fix."""


def _binary(name: str) -> str:
    path = BIN_DIR / name
    if not path.exists():
        raise PostgresError(f"{path} is missing: {INSTALL_HINT}")
    return str(path)


def _as_server_user(argv: list[str]) -> list[str]:
    """Root runs PostgreSQL's tools as `postgres`; anyone else runs them as themselves."""
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


def _run(argv: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _as_server_user(argv),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        cwd="/",  # `postgres` may not be allowed into our working directory
    )


def _give_to_server_user(path: Path) -> None:
    if os.geteuid() != 0:
        return
    try:
        server_user = pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresError(f"there is no `postgres` user: {INSTALL_HINT}") from None
    os.chown(path, server_user.pw_uid, server_user.pw_gid)
    # The server user must be able to reach the directory, not only own it.
    probe = _run(["test", "-w", str(path), "-a", "-x", str(path)], timeout=10)
    if probe.returncode != 0:
        raise PostgresError(
            f"the postgres user cannot reach {path} (a parent directory is closed to "
            "other users): give a work directory under /tmp, or none for a fresh one"
        )


@dataclass
class RunningPostgres:
    """One throwaway cluster: `start` and `stop` may be repeated on the same data."""

    port: int
    workdir: Path
    user: str = SUPERUSER

    @property
    def datadir(self) -> Path:
        return self.workdir / "data"

    @property
    def logfile(self) -> Path:
        return self.workdir / "postgres.log"

    def url(self, database: str = DEFAULT_DATABASE) -> str:
        """A SQLAlchemy URL (psycopg 3) for one database of this server."""
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def jdbc_url(self, database: str = DEFAULT_DATABASE) -> str:
        """Keycloak's `KC_DB_URL` (with `KC_DB_USERNAME` = `.user`; no password needed)."""
        return f"jdbc:postgresql://127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection:
        """A plain autocommit psycopg connection, for arranging and inspecting."""
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=self.user,
            dbname=database,
            autocommit=True,
            connect_timeout=5,
        )

    def create_database(self, name: str) -> str:
        """Create `name` unless it exists; returns its SQLAlchemy URL."""
        if not _DATABASE_NAME.match(name):
            raise PostgresError(f"database name {name!r}: use lower-case letters, digits and _")
        with self.connect() as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if found.fetchone() is None:
                conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def pid(self) -> int | None:
        """The postmaster's pid while it runs from this data directory."""
        return read_pidfile(
            self.datadir / "postmaster.pid", lambda pid: _is_postmaster_of(pid, self.datadir)
        )

    def is_running(self) -> bool:
        return self.pid() is not None

    def start(self) -> None:
        """Start the server on its data directory and port; returns once it accepts
        connections (pg_ctl -w waits for that)."""
        if self.is_running():
            return
        # pg_ctl hands the options to a shell. A socket path longer than the kernel's
        # limit (about 100 bytes) cannot be bound: then TCP alone.
        sockets = shlex.quote(str(self.workdir) if len(str(self.workdir)) < 90 else "")
        options = f"-p {self.port} -k {sockets} -c listen_addresses=127.0.0.1 {SERVER_OPTIONS}"
        result = _run(
            [
                _binary("pg_ctl"),
                "-D",
                str(self.datadir),
                "-l",
                str(self.logfile),
                "-o",
                options,
                "-w",
                "-t",
                str(START_TIMEOUT),
                "start",
            ],
            timeout=START_TIMEOUT + 10,
        )
        if result.returncode != 0:
            raise PostgresError(
                f"PostgreSQL did not start on 127.0.0.1:{self.port} "
                f"(exit {result.returncode}): {log_tail(self.logfile, 3)}"
            )

    def stop(self) -> bool:
        """Stop the server (fast mode: open sessions are cut, nothing waits for clients);
        killed when it does not go within the timeout. True when it was running."""
        pid = self.pid()
        if pid is None:
            return False
        with contextlib.suppress(subprocess.TimeoutExpired):
            _run(
                [
                    _binary("pg_ctl"),
                    "-D",
                    str(self.datadir),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    str(STOP_TIMEOUT),
                    "stop",
                ],
                timeout=STOP_TIMEOUT + 5,
            )
        if wait_gone(pid, 1.0):
            return True
        # SIGQUIT is PostgreSQL's immediate shutdown: it takes its children with it.
        if not terminate(pid, 5.0, sig=signal.SIGQUIT):
            wait_gone(pid, 5.0)
        return True

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        """Stop the server and delete its work directory."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _is_postmaster_of(pid: int, datadir: Path) -> bool:
    if not running(pid):
        return False  # gone, or exited and not yet reaped
    cmdline = command_line(pid).split(b"\0")
    return cmdline[0].endswith(b"postgres") and str(datadir).encode() in cmdline


def init_cluster(workdir: Path) -> None:
    """`initdb` a fresh cluster into `workdir/data`."""
    datadir = workdir / "data"
    result = _run(
        [
            _binary("initdb"),
            "-D",
            str(datadir),
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            # C.UTF-8 is always there on Debian; its ctype makes lower() Unicode-aware.
            "--locale=C.UTF-8",
            "--no-sync",
            "--no-instructions",
        ],
        timeout=120,
    )
    if result.returncode != 0:
        raise PostgresError(f"initdb failed (exit {result.returncode}): {tail(result.stderr, 3)}")


def start_throwaway(workdir: Path | None = None, port: int | None = None) -> RunningPostgres:
    """A new cluster with a database `umpass`, running on `port` (a free one when None).

    `workdir` (created when missing) holds the cluster, the socket and the log; by default
    a fresh directory under the system's temporary directory.
    """
    _binary("initdb")
    home = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="umpass-pg-"))
    home.mkdir(parents=True, exist_ok=True)
    if (home / "data").exists():
        raise PostgresError(f"{home / 'data'} exists: give an empty work directory")
    _give_to_server_user(home)
    init_cluster(home)

    def start(chosen: int) -> RunningPostgres:
        server = RunningPostgres(chosen, home)
        server.start()
        return server

    server = on_free_port(start, port, PostgresError)
    server.create_database(DEFAULT_DATABASE)
    return server


# -- command line -----------------------------------------------------------------------


def _state_path() -> Path:
    cache = Path(os.environ.get("UMPASS_CACHE_DIR", Path.home() / ".cache" / "umpass"))
    return cache / "postgres.json"


def _from_state() -> RunningPostgres | None:
    try:
        state = json.loads(_state_path().read_text())
        return RunningPostgres(int(state["port"]), Path(state["workdir"]))
    except (OSError, ValueError, KeyError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devstack.postgres", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["start", "stop"])
    parser.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one)")
    args = parser.parse_args(argv)
    known = _from_state()
    if args.command == "stop":
        _state_path().unlink(missing_ok=True)
        if known is None or not known.is_running():
            print("no PostgreSQL of ours was running", file=sys.stderr)
            if known is not None:
                shutil.rmtree(known.workdir, ignore_errors=True)
            return 1
        known.destroy()
        print(f"stopped PostgreSQL on 127.0.0.1:{known.port}")
        return 0
    if known is not None and known.is_running():
        print(
            f"error: PostgreSQL already runs on port {known.port} (stop it first)", file=sys.stderr
        )
        return 2
    try:
        server = start_throwaway(port=args.port)
    except PostgresError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _state_path().parent.mkdir(parents=True, exist_ok=True)
    _state_path().write_text(json.dumps({"port": server.port, "workdir": str(server.workdir)}))
    print(f"DATABASE_URL={server.url()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
