"""Service replicas in processes of their own (tests/support/service_process.py), and a
browser for them that speaks real HTTP to whichever replica it is pointed at.

The test binds each replica's listening socket and hands it over, so no port is picked
and then bound by someone else. A replica runs in a process group of its own and is
stopped by that group's id.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import requests
from devstack.processes import log_tail, wait_until

from provider.flows.engine import FLOW_COOKIE
from tests.support.service_process import CRASH_POINTS

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0
REQUEST_TIMEOUT = 60.0  # a request may wait for a crashed worker's replacement


@dataclass
class Replica:
    name: str
    url: str
    control: Path
    log_file: Path
    process: subprocess.Popen[bytes]

    def crash_at(self, point: str) -> None:
        """The worker dies at `point` on the next request that passes it."""
        assert point in CRASH_POINTS, point
        (self.control / point).touch()

    def crash_armed(self, point: str) -> bool:
        return (self.control / point).exists()

    def unguard(self) -> None:
        """Blind the gateway's already-active check (see service_process) until `reset`."""
        (self.control / "unguarded").touch()

    def answers(self) -> bool:
        try:
            return requests.get(self.url + "/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def ended(self) -> bool:
        return self.process.poll() is not None

    def wait_ready(self) -> None:
        if not wait_until(self.answers, START_TIMEOUT, poll=0.1, give_up=self.ended):
            raise RuntimeError(f"{self.name} did not start: {log_tail(self.log_file)}")

    def reset(self) -> None:
        """No crash point armed, the gateway guarded: as a test found it."""
        for point in self.control.iterdir():
            point.unlink()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # gunicorn's master and its worker
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_replica(name: str, env: Mapping[str, str], workdir: Path, *, threads: int) -> Replica:
    """Start one; `wait_ready` before use (several can boot side by side)."""
    control = workdir / f"{name}-control"
    control.mkdir(parents=True, exist_ok=True)
    log_file = workdir / f"{name}.log"
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    port = listener.getsockname()[1]
    inherited = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    pythonpath = os.pathsep.join(p for p in [str(ROOT), str(ROOT / "scripts"), *inherited] if p)
    try:
        with log_file.open("ab") as log:
            process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "tests.support.service_process"),
                    *("--fd", str(listener.fileno()), "--threads", str(threads)),
                ],
                env={
                    **os.environ,
                    **env,
                    "PYTHONPATH": pythonpath,
                    "UMPASS_TEST_CONTROL_DIR": str(control),
                },
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                pass_fds=(listener.fileno(),),
                start_new_session=True,
            )
    finally:
        listener.close()  # the replica holds its own copy
    return Replica(name, f"http://127.0.0.1:{port}", control, log_file, process)


class WebResponse:
    """What FlowClient reads of a Flask test response, from a real HTTP answer."""

    def __init__(self, response: requests.Response) -> None:
        self._response = response
        self.status_code = response.status_code
        self.headers = response.headers
        self.location = response.headers.get("Location")

    def get_data(self, as_text: bool = False) -> str | bytes:
        return self._response.text if as_text else self._response.content


class HttpBrowser:
    """A browser's cookie jar over real HTTP, with the calls FlowClient makes of Flask's
    test client. `base_url` may be switched between replicas: cookies belong to the host,
    as they do behind one public address."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()

    def get(self, path: str) -> WebResponse:
        return WebResponse(
            self.session.get(self.base_url + path, allow_redirects=False, timeout=REQUEST_TIMEOUT)
        )

    def post(
        self, path: str, data: Mapping[str, str], follow_redirects: bool = False
    ) -> WebResponse:
        return WebResponse(
            self.session.post(
                self.base_url + path,
                data=data,
                allow_redirects=follow_redirects,
                timeout=REQUEST_TIMEOUT,
            )
        )

    def hold_flow(self, flow_id: str | None) -> None:
        """Hold a stored flow's cookie, as the browser that reached it would (every
        replica resumes it: flows live in the shared database under the shared key)."""
        assert flow_id, "no stored flow to hold"
        host = urlsplit(self.base_url).hostname or ""
        self.session.cookies.set(FLOW_COOKIE, flow_id, domain=host, path="/activate")

    def cookie_header(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.session.cookies)


@dataclass(frozen=True)
class Submit:
    """One form post of a race: where, with which browser's cookies, what."""

    url: str
    path: str
    cookies: str
    form: Mapping[str, str]

    def request_bytes(self) -> bytes:
        body = urlencode(self.form).encode()
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {urlsplit(self.url).netloc}\r\n"
            f"Cookie: {self.cookies}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        return head.encode() + body


def race(submits: list[Submit]) -> list[int]:
    """Post all at once; each submit's status, in order.

    Each post is sent whole but for its last byte over a connection of its own, so every
    replica has read and is holding all requests; a barrier then releases the last bytes
    together.
    """
    barrier = threading.Barrier(len(submits))
    statuses: list[int | BaseException] = [0] * len(submits)

    def one(index: int) -> None:
        submit = submits[index]
        parts = urlsplit(submit.url)
        data = submit.request_bytes()
        try:
            with socket.create_connection(
                (parts.hostname, parts.port), timeout=REQUEST_TIMEOUT
            ) as sock:
                sock.sendall(data[:-1])
                barrier.wait(timeout=REQUEST_TIMEOUT)
                sock.sendall(data[-1:])
                response = http.client.HTTPResponse(sock)
                response.begin()
                response.read()
                statuses[index] = response.status
        except BaseException as exc:  # reported below, not lost in the thread
            barrier.abort()
            statuses[index] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(submits))]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(REQUEST_TIMEOUT - (time.monotonic() - started) + 5)
    failed = [s for s in statuses if isinstance(s, BaseException)]
    assert not failed, failed
    return [int(s) for s in statuses]  # type: ignore[arg-type]
