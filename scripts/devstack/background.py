"""A server process of the stack that we start ourselves: a service replica, the demo app,
the mail catcher. Each runs in its own process group (a replica's gunicorn workers die
with it), writes its own log, and is recognised by its command line before any signal,
so a recorded pid that now belongs to someone else is never touched.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from devstack.processes import (
    exited,
    find_ours,
    group_ended,
    log_tail,
    on_free_ports,
    send,
    spawn,
    wait_until,
)

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
            process = spawn(self.argv, {**os.environ, **self.env}, self.log_file)
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
        def ended() -> bool:
            return exited(self.process, self.is_ours)

        if wait_until(self.answers, timeout, poll=0.1, give_up=ended):
            return
        if ended():
            raise BackgroundError(f"{self.name} exited while starting: {self.tail()}")
        raise BackgroundError(
            f"{self.name} did not answer within {timeout:.0f} s; see {self.log_file}"
        )

    def is_ours(self) -> bool:
        """True while our process runs; one restarted by another process that shares the
        state file (which may be older) is found, and adopted, by its command line."""
        if self.process is not None and self.process.pid == self.pid:
            # Our own child: its exit status decides. Its command line may not say: gunicorn
            # renames its master when setproctitle is installed (mutmut brings it into the
            # dev lock), and then a kill found nothing of ours, left the replica serving and
            # made its restart fail with "address in use".
            return self.process.poll() is None
        found = find_ours(self.pid, self._matches)
        if found is not None and found != self.pid:
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
        group = self.pid
        send(group, sig, group=True)
        return wait_until(lambda: group_ended(group) and not self.is_ours(), timeout, poll=0.05)

    def tail(self, lines: int = 5) -> str:
        return log_tail(self.log_file, lines)

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


def start_background(
    name: str, argv: list[str], port: int, health: str, env: dict[str, str], log: Path
) -> Background:
    """Start one part of a benchmark's stack on `port` and wait until `health` answers."""
    part = Background(name=name, argv=argv, port=port, log_file=log, health_path=health, env=env)
    part.start()
    return part


def serve_on_a_free_port(
    log_file: Path,
    env: Mapping[str, str],
    *,
    threads: int = 8,
    name: str = "service",
    module: str = "provider.cli",
) -> Background:
    """`umpass serve` (one worker) on a free loopback port, once /healthz answers; the port
    is chosen again if something takes it before gunicorn binds it. `module` is another
    app with the same `serve` command line (devstack.framework_floor)."""

    def start(port: int) -> Background:
        part = Background(
            name=name,
            argv=[
                sys.executable,
                *("-m", module, "serve", "--host", "127.0.0.1", "--port", str(port)),
                *("--workers", "1", "--threads", str(threads)),
            ],
            port=port,
            log_file=log_file,
            health_path="/healthz",
            env=dict(env),
        )
        part.start()
        return part

    return on_free_ports(start, 1, BackgroundError)
