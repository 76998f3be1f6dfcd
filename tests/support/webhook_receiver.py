"""A real HTTP receiver of webhooks on loopback, for the delivery tests.

Bound (not listening) from the start, so its URL is known and a delivery before `start()`
is refused by the kernel, as by a receiver that is down. It checks each request's
Standard Webhooks signature with its own few lines (not the service's signing module),
and records what came in. `answer` chooses each reply's status.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    webhook_id: str
    timestamp: int
    signature_ok: bool
    body: dict[str, Any]
    agent: str  # which deliver process sent it (its User-Agent)

    @property
    def type(self) -> str:
        return str(self.body["type"])

    @property
    def user_id(self) -> str:
        return str(self.body["data"]["user_id"])


class Receiver:
    def __init__(self, secret: str, answer: Callable[[Received], int] = lambda _: 204) -> None:
        self.key = base64.b64decode(secret.removeprefix("whsec_"))
        self.answer = answer
        self.delay = 0.0  # seconds each request takes (widens races in the concurrency test)
        self.received: list[Received] = []  # every request, whatever was answered
        self.accepted: list[Received] = []  # those answered 2xx
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/hooks"
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _signed(self, headers: Any, raw: bytes) -> tuple[str, int, bool]:
        msg_id = headers.get("webhook-id", "")
        stamp = headers.get("webhook-timestamp", "0")
        mac = hmac.new(self.key, f"{msg_id}.{stamp}.".encode() + raw, hashlib.sha256).digest()
        expected = "v1," + base64.b64encode(mac).decode()
        sent = headers.get("webhook-signature", "").split()
        fresh = abs(time.time() - int(stamp)) <= 300
        return msg_id, int(stamp), fresh and any(hmac.compare_digest(s, expected) for s in sent)

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", "0")))
                msg_id, stamp, ok = receiver._signed(self.headers, raw)
                got = Received(
                    msg_id, stamp, ok, json.loads(raw), self.headers.get("user-agent", "")
                )
                if receiver.delay:
                    time.sleep(receiver.delay)
                status = receiver.answer(got)
                with receiver._lock:
                    receiver.received.append(got)
                    if 200 <= status < 300:
                        receiver.accepted.append(got)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self._sock.listen(64)
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        server.socket.close()
        server.socket = self._sock
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._thread.join()  # type: ignore[union-attr]
        self._sock.close()

    def ids(self) -> list[str]:
        with self._lock:
            return [r.webhook_id for r in self.accepted]


def until(
    condition: Callable[[], bool], timeout: float = 30.0, also: Callable[[], object] = lambda: None
) -> None:
    """Wait for `condition` (doing `also` between looks), failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        also()
