"""Loopback listeners bound before anyone learns their port, and servers run on them.

A port found free and bound later can be taken in between (by another server, or as the
local end of an outgoing connection): a socket bound to port 0 and kept open cannot, so
the fixtures bind first and hand the bound socket to whatever serves on it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

from werkzeug.serving import make_server


def loopback_listener() -> socket.socket:
    """A TCP socket on 127.0.0.1, on a port the kernel chose, already listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def port_of(listener: socket.socket) -> int:
    return int(listener.getsockname()[1])


@contextlib.contextmanager
def serving(app: Any, listener: socket.socket) -> Iterator[str]:
    """`app` (WSGI) served by werkzeug's threaded server on `listener`; its base URL."""
    server = make_server("127.0.0.1", port_of(listener), app, threaded=True, fd=listener.fileno())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
