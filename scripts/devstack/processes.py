"""What the devstack's process runners share: loopback ports, pid files, /proc, waiting
and stopping.

A wait polls with a deadline; a stop is a signal, a wait with a deadline, then SIGKILL.
The callers keep their own timeouts, signals, poll intervals and error messages, and say
what "ready" and "gone" mean for their server.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# -- ports ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def on_free_port(start: Callable[[int], T], port: int | None, error: type[Exception]) -> T:
    """`start(port)`, or `start` on a free port when `port` is None: chosen again (three
    tries in all) when `start` raises `error`."""
    for attempt in range(3):
        try:
            return start(port or free_port())
        except error:
            # A free port may be taken between choosing and binding; choose again.
            if port is not None or attempt == 2:
                raise
    raise AssertionError("unreachable")


def on_free_ports(start: Callable[..., T], count: int, error: type[Exception]) -> T:
    """`start(*ports)` on `count` distinct free ports, for a server that binds them itself
    (it cannot be handed a bound socket): chosen again (three tries in all) when `start`
    raises `error` and one of the ports turns out taken, i.e. something bound it between
    choosing and binding. Any other failure is raised at once."""
    for attempt in range(3):
        ports: list[int] = []
        while len(ports) < count:
            port = free_port()
            if port not in ports:
                ports.append(port)
        try:
            return start(*ports)
        except error:
            if attempt == 2 or not any(port_in_use(port) for port in ports):
                raise
    raise AssertionError("unreachable")


# -- pid files and /proc ------------------------------------------------------------------


def read_pidfile(path: Path, ours: Callable[[int], bool] | None = None) -> int | None:
    """The pid on the first line of `path`; None when there is none yet, or when `ours`
    says the process it names is not ours (a pid file outlives its process)."""
    try:
        pid = int(path.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    return pid if ours is None or ours(pid) else None


def command_line(pid: int) -> bytes:
    """`pid`'s raw command line (NUL-separated); empty once it has ended."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name: state, ppid, pgrp, ... (None once gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _all_stats() -> Iterator[tuple[int, list[str]]]:
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            fields = _stat(int(proc.name))
            if fields is not None:
                yield int(proc.name), fields


def running(pid: int) -> bool:
    """True while `pid` runs. A zombie has stopped all the same: it only waits for its
    parent (init, for a detached daemon, may take a second) to reap it."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def live_cmdline(pid: int) -> list[bytes] | None:
    """The command line of `pid` while it runs (None once it ended, zombies included)."""
    if not running(pid):
        return None
    return command_line(pid).removesuffix(b"\0").split(b"\0")


def children(pid: int) -> set[int]:
    return {child for child, fields in _all_stats() if int(fields[1]) == pid}


def find_group_leader(matches: Callable[[list[bytes]], bool]) -> int | None:
    """A live process group leader whose command line `matches`."""
    for pid, fields in _all_stats():
        if int(fields[2]) == pid:
            cmdline = live_cmdline(pid)
            if cmdline is not None and matches(cmdline):
                return pid
    return None


def find_ours(pid: int | None, matches: Callable[[list[bytes]], bool]) -> int | None:
    """`pid` while its command line `matches`; else a live group leader's that does (the
    same server restarted by another process sharing the state file); else None."""
    if pid is not None:
        cmdline = live_cmdline(pid)
        if cmdline is not None and matches(cmdline):
            return pid
    return find_group_leader(matches)


def group_alive(group: int) -> bool:
    """True while any live process is left in the group (gunicorn's workers)."""
    return any(fields[0] != "Z" and int(fields[2]) == group for _, fields in _all_stats())


def group_ended(group: int) -> bool:
    """True once no live process is left in `group`; reaps its leader when it is our child."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(group, os.WNOHANG)
    return not group_alive(group)


def exited(process: subprocess.Popen[bytes] | None, is_ours: Callable[[], bool]) -> bool:
    """Whether a process we may have started has ended (by its exit status when it is our
    child, else by its command line)."""
    if process is not None:
        return process.poll() is not None
    return not is_ours()


def tail(text: str, lines: int = 5) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


def log_tail(path: Path, lines: int = 5) -> str:
    try:
        return tail(path.read_text(errors="replace"), lines)
    except OSError:
        return ""


# -- starting, waiting, stopping --------------------------------------------------------


def spawn(
    argv: list[str],
    env: Mapping[str, str],
    log_file: Path,
    *,
    cwd: Path | None = None,
    append: bool = True,
) -> subprocess.Popen[bytes]:
    """Start `argv` in a session (and process group) of its own, its output in `log_file`."""
    with log_file.open("ab" if append else "wb") as log:
        return subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    *,
    poll: float = 0.02,
    give_up: Callable[[], bool] | None = None,
) -> bool:
    """Ask `predicate` every `poll` seconds: True once it holds; False after `timeout`
    seconds, or at once when `give_up()` (asked after each miss) holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if give_up is not None and give_up():
            return False
        if time.monotonic() > deadline:
            return False
        time.sleep(poll)
    return True


def wait_gone(pid: int, timeout: float) -> bool:
    return wait_until(lambda: not running(pid), timeout)


def reap_group(group: int, timeout: float) -> bool:
    """Wait until no live process is left in `group`; False after `timeout` seconds."""
    return wait_until(lambda: group_ended(group), timeout, poll=0.05)


def send(pid: int, sig: signal.Signals, *, group: bool = False) -> bool:
    """Send `sig` to `pid`, or to its process group; False when there is none."""
    try:
        (os.killpg if group else os.kill)(pid, sig)
    except ProcessLookupError:
        return False
    return True


def terminate(
    pid: int,
    grace: float,
    *,
    gone: Callable[[], bool] | None = None,
    sig: signal.Signals = signal.SIGTERM,
    group: bool = False,
    poll: float = 0.02,
) -> bool:
    """`sig` (SIGTERM) to `pid` or its process group, SIGKILL when it has not gone within
    `grace` seconds; True when it went by itself. `gone` says when it has (by default:
    once `pid` no longer runs)."""
    if not send(pid, sig, group=group):
        return True
    if wait_until(gone or (lambda: not running(pid)), grace, poll=poll):
        return True
    send(pid, signal.SIGKILL, group=group)
    return False
