"""A TCP proxy on loopback between the service and Keycloak that fails one chosen request.

Everything else passes through untouched, so a test can let the service read what it
needs (token, password policy, the user) and fail exactly the write it is about:

* `Fault.UNREACHABLE`: the connection is cut before the request reaches Keycloak, as when
  Keycloak goes away between the service's read and its write;
* `Fault.ANSWER_LOST`: the request reaches Keycloak and is applied, then the connection
  is cut before its answer gets back (Keycloak commits before it answers, so the first
  byte of the answer means the write is in);
* `Fault.UNAVAILABLE_503`: the proxy answers 503 itself, as a load balancer does when no
  Keycloak node is up.

The proxy reads requests whole (head and Content-Length body) so that it can name each
one; answers stream back byte for byte. It binds its own port.
"""

from __future__ import annotations

import contextlib
import enum
import socket
import threading
from dataclasses import dataclass, field
from urllib.parse import urlsplit

_HEAD_END = b"\r\n\r\n"
_UNAVAILABLE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 19\r\nConnection: close\r\n\r\nService Unavailable"
)


class Fault(enum.Enum):
    UNREACHABLE = "unreachable"
    ANSWER_LOST = "answer lost"
    UNAVAILABLE_503 = "503"


@dataclass
class Trap:
    method: str
    path: str
    fault: Fault
    skip: int = 0  # matching requests let through first
    fired: threading.Event = field(default_factory=threading.Event)

    def matches(self, method: str, path: str) -> bool:
        return method == self.method and path == self.path


class FaultProxy:
    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._prefix = parts.path.rstrip("/")
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._lock = threading.Lock()
        self._traps: list[Trap] = []
        self._sockets: list[socket.socket] = []
        self.requests: list[str] = []  # "METHOD /path" of every request seen, in order
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}{self._prefix}"

    def arm(self, method: str, path: str, fault: Fault, *, skip: int = 0) -> Trap:
        """Fail a request `method` to exactly `path` (query dropped): the next one, or the
        one after `skip` such."""
        trap = Trap(method, path, fault, skip)
        with self._lock:
            self._traps.append(trap)
        return trap

    def close(self) -> None:
        self._closed = True
        with self._lock:
            for sock in [self._listener, *self._sockets]:
                _close(sock)

    # -- plumbing --------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._upstream, timeout=30)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._sockets += [client, upstream]
            connection = _Connection(self, client, upstream)
            threading.Thread(target=connection.requests_up, daemon=True).start()
            threading.Thread(target=connection.answers_down, daemon=True).start()

    def _take_trap(self, method: str, path: str) -> Trap | None:
        with self._lock:
            self.requests.append(f"{method} {path}")
            for trap in self._traps:
                if trap.matches(method, path):
                    if trap.skip:
                        trap.skip -= 1
                        return None
                    self._traps.remove(trap)
                    return trap
        return None


class _Connection:
    def __init__(self, proxy: FaultProxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.cut_on_answer: Trap | None = None

    def requests_up(self) -> None:
        buffer = b""
        try:
            while True:
                while _HEAD_END not in buffer:
                    chunk = self.client.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, rest = buffer.partition(_HEAD_END)
                length = _content_length(head)
                while len(rest) < length:
                    chunk = self.client.recv(65536)
                    if not chunk:
                        return
                    rest += chunk
                request, buffer = head + _HEAD_END + rest[:length], rest[length:]
                method, target = head.split(b" ", 2)[:2]
                path = target.decode().split("?", 1)[0]
                trap = self.proxy._take_trap(method.decode(), path)
                if trap is not None and trap.fault is Fault.UNREACHABLE:
                    trap.fired.set()
                    return  # cut: Keycloak never sees it
                if trap is not None and trap.fault is Fault.UNAVAILABLE_503:
                    # Marked before the answer goes: the client may act on it (and the
                    # test look at `fired`) before this thread runs again.
                    trap.fired.set()
                    self.client.sendall(_UNAVAILABLE)
                    return
                self.cut_on_answer = trap  # ANSWER_LOST: cut when Keycloak answers
                self.upstream.sendall(request)
        except OSError:
            return
        finally:
            self._end()

    def answers_down(self) -> None:
        try:
            while True:
                chunk = self.upstream.recv(65536)
                if not chunk:
                    return
                if self.cut_on_answer is not None:
                    self.cut_on_answer.fired.set()
                    return  # the write is in; its answer is dropped
                self.client.sendall(chunk)
        except OSError:
            return
        finally:
            self._end()

    def _end(self) -> None:
        for sock in (self.client, self.upstream):
            _close(sock)


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"transfer-encoding":
            raise ValueError("the fault proxy reads requests with a Content-Length only")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
