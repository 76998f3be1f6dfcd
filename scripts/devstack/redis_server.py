"""A throwaway Redis (Debian's `redis-server`) on a loopback port.

Nothing is persisted (`--save ''`, no append-only file): the service keeps only rate
limit counters there, and losing them with the process is what a restart should do.
`stop()` and `start()` may be repeated on the same port, so a fault test can take Redis
away and bring it back where the replicas expect it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from devstack.processes import (
    command_line,
    on_free_port,
    read_pidfile,
    running,
    terminate,
    wait_until,
)

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
INSTALL_HINT = "apt-get install -y redis-server (scripts/stack installs it when missing)"


class RedisError(Exception):
    """Redis could not be started; the message says what to fix."""


def ping(port: int, timeout: float = 1.0) -> bool:
    """True when a Redis on 127.0.0.1:`port` answers PING (plain RESP, no client needed)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RunningRedis:
    port: int
    directory: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pidfile(self) -> Path:
        return self.directory / "redis.pid"

    @property
    def logfile(self) -> Path:
        return self.directory / "redis.log"

    def pid(self) -> int | None:
        """The server's pid while it is a redis-server of ours on our port."""
        return read_pidfile(self.pidfile, self._runs)

    def _runs(self, pid: int) -> bool:
        cmdline = command_line(pid)
        return b"redis-server" in cmdline and f":{self.port}".encode() in cmdline

    def ping(self) -> bool:
        return ping(self.port)

    def start(self) -> None:
        """Start on `port` (again) and return once it answers PING."""
        if self.pid() is not None and self.ping():
            return
        binary = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin")
        if binary is None:
            raise RedisError(f"redis-server is not installed: {INSTALL_HINT}")
        self.directory.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--daemonize",
                "yes",
                "--pidfile",
                str(self.pidfile),
                "--logfile",
                str(self.logfile),
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            timeout=START_TIMEOUT,
        )
        if result.returncode != 0:
            raise RedisError(
                f"redis-server did not start: {(result.stderr or result.stdout)[-300:]}"
            )
        if not wait_until(self.ping, START_TIMEOUT, poll=0.05):
            raise RedisError(
                f"Redis did not answer on 127.0.0.1:{self.port} within "
                f"{START_TIMEOUT:.0f} s; see {self.logfile}"
            )

    def stop(self) -> bool:
        """Stop it (SIGTERM, then SIGKILL); True when it was running."""
        pid = self.pid()
        if pid is None:
            return False
        terminate(pid, STOP_TIMEOUT, gone=lambda: self.pid() != pid or not running(pid))
        # Until the port is free a start on it would fail.
        wait_until(lambda: not self.ping(), STOP_TIMEOUT)
        return True


def start_throwaway(directory: Path, port: int | None = None) -> RunningRedis:
    """A fresh Redis on `port` (a free one when None), its files in `directory`."""

    def start(chosen: int) -> RunningRedis:
        server = RunningRedis(chosen, directory)
        server.start()
        return server

    return on_free_port(start, port, RedisError)
