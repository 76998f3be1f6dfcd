"""A throwaway Redis (Debian's `redis-server`) on a loopback port.

Nothing is persisted (`--save ''`, no append-only file): the service keeps only rate
limit counters there, and losing them with the process is what a restart should do.
`stop()` and `start()` may be repeated on the same port, so a fault test can take Redis
away and bring it back where the replicas expect it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
INSTALL_HINT = "apt-get install -y redis-server (scripts/stack installs it when missing)"


class RedisError(Exception):
    """Redis could not be started; the message says what to fix."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
        try:
            pid = int(self.pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if b"redis-server" in cmdline and f":{self.port}".encode() in cmdline else None

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
        deadline = time.monotonic() + START_TIMEOUT
        while not self.ping():
            if time.monotonic() > deadline:
                raise RedisError(
                    f"Redis did not answer on 127.0.0.1:{self.port} within "
                    f"{START_TIMEOUT:.0f} s; see {self.logfile}"
                )
            time.sleep(0.05)

    def stop(self) -> bool:
        """Stop it (SIGTERM, then SIGKILL); True when it was running."""
        pid = self.pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while self.pid() == pid and _running(pid):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.02)
        # Until the port is free a start on it would fail.
        deadline = time.monotonic() + STOP_TIMEOUT
        while self.ping() and time.monotonic() < deadline:
            time.sleep(0.02)
        return True


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has stopped


def start_throwaway(directory: Path, port: int | None = None) -> RunningRedis:
    """A fresh Redis on `port` (a free one when None), its files in `directory`."""
    for attempt in range(3):
        server = RunningRedis(port or free_port(), directory)
        try:
            server.start()
            return server
        except RedisError:
            # A free port may be taken between choosing and binding; choose again.
            if port is not None or attempt == 2:
                raise
    raise AssertionError("unreachable")
