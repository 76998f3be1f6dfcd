"""A server process of the stack that we start ourselves: a service replica, the demo app,
the mail catcher. Each runs in its own process group (a replica's gunicorn workers die
with it), writes its own log, and is recognised by its command line before any signal,
so a recorded pid that now belongs to someone else is never touched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT = 60.0


class BackgroundError(Exception):
    """A process did not start or answer; the message says where to look."""


@dataclass
class Background:
    name: str
    argv: list[str]
    port: int
    log_file: Path
    health_path: str | None = None  # an HTTP path answering 200 when ready; None: TCP only
    env: dict[str, str] = field(default_factory=dict, repr=False)  # on top of os.environ
    pid: int | None = None
    # Set when this process started it: between fork and exec the command line is still
    # ours, so only the child's exit status says it died.
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def direct_url(self) -> str:
        """The process itself on loopback, bypassing nginx."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait: bool = True, timeout: float = START_TIMEOUT) -> None:
        """Start it (again, on the same port) unless it runs; by default wait until ready."""
        if not self.is_ours():
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            with self.log_file.open("ab") as log:
                process = subprocess.Popen(
                    self.argv,
                    env={**os.environ, **self.env},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            self.pid = process.pid
            self.process = process
        if wait:
            self.wait_ready(timeout)

    def answers(self) -> bool:
        if self.health_path is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                return False
        try:
            url = self.direct_url + self.health_path
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not self.answers():
            if exited(self.process, self.is_ours):
                raise BackgroundError(f"{self.name} exited while starting: {self.tail()}")
            if time.monotonic() > deadline:
                raise BackgroundError(
                    f"{self.name} did not answer within {timeout:.0f} s; see {self.log_file}"
                )
            time.sleep(0.1)

    def is_ours(self) -> bool:
        """True while our process runs; one restarted by another process that shares the
        state file (which may be older) is found, and adopted, by its command line."""
        if self.pid is not None:
            cmdline = live_cmdline(self.pid)
            if cmdline is not None and self._matches(cmdline):
                return True
        found = find_group_leader(self._matches)
        if found is not None:
            self.pid, self.process = found, None
        return found is not None

    def _matches(self, cmdline: list[bytes]) -> bool:
        # A script with a shebang runs as "python script args...": compare the program by
        # presence and the arguments as the command line's tail.
        args = [a.encode() for a in self.argv[1:]]
        return self.argv[0].encode() in cmdline and cmdline[len(cmdline) - len(args) :] == args

    def kill(self) -> None:
        """SIGKILL the whole process group at once, as a crash would."""
        self._signal_and_wait(signal.SIGKILL, 10.0)

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM (gunicorn finishes its requests), then SIGKILL after `grace`."""
        if not self._signal_and_wait(signal.SIGTERM, grace):
            self.kill()

    def _signal_and_wait(self, sig: signal.Signals, timeout: float) -> bool:
        if not self.is_ours() or self.pid is None:
            return True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, os.WNOHANG)  # reap it when it is our child
            if not self.is_ours() and not group_alive(self.pid):
                return True
            time.sleep(0.05)
        return False

    def tail(self, lines: int = 5) -> str:
        try:
            text = self.log_file.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def to_state(self) -> dict[str, object]:
        return {
            "name": self.name,
            "argv": self.argv,
            "port": self.port,
            "log_file": str(self.log_file),
            "health_path": self.health_path,
            "env": self.env,
            "pid": self.pid,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, object]) -> Background:
        return cls(
            name=str(state["name"]),
            argv=[str(a) for a in state["argv"]],  # type: ignore[attr-defined]
            port=int(state["port"]),  # type: ignore[call-overload]
            log_file=Path(str(state["log_file"])),
            health_path=state.get("health_path"),  # type: ignore[arg-type]
            env=dict(state.get("env") or {}),  # type: ignore[call-overload]
            pid=state.get("pid"),  # type: ignore[arg-type]
        )


def exited(process: subprocess.Popen[bytes] | None, is_ours: Callable[[], bool]) -> bool:
    """Whether a process we may have started has ended (by its exit status when it is our
    child, else by its command line)."""
    if process is not None:
        return process.poll() is not None
    return not is_ours()


def live_cmdline(pid: int) -> list[bytes] | None:
    """The command line of `pid` while it runs (None once it ended, zombies included)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if stat.rsplit(")", 1)[1].split()[0] == "Z":
        return None
    return raw.removesuffix(b"\0").split(b"\0")


def find_group_leader(matches: Callable[[list[bytes]], bool]) -> int | None:
    """A live process group leader whose command line `matches`."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) != int(proc.name):
            continue
        cmdline = live_cmdline(int(proc.name))
        if cmdline is not None and matches(cmdline):
            return int(proc.name)
    return None


def group_alive(group: int) -> bool:
    """True while any live process is left in the group (gunicorn's workers)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == group:  # state, ppid, pgrp
            return True
    return False
