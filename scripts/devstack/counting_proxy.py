"""A forwarding HTTP proxy that counts requests per path, for benchmarks: put between
Keycloak and the service's back-channel (token, userinfo, JWKS), it says how many calls
Keycloak made per journey (the service keeps no access log). Its own process, so its
work never shows in the service's or the load client's CPU.

    python -m devstack.counting_proxy --port N --target http://127.0.0.1:M

`GET /__counts` answers the counts so far ("METHOD path": n) as JSON (not forwarded).
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

COUNTS_PATH = "/__counts"
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host"}


def make_handler(target: str) -> type[BaseHTTPRequestHandler]:
    host = urlsplit(target)
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet

        def do_GET(self) -> None:
            if self.path == COUNTS_PATH:
                with lock:
                    body = json.dumps(dict(counts)).encode()
                self._reply(200, [("Content-Type", "application/json")], body)
                return
            self._forward()

        def do_POST(self) -> None:
            self._forward()

        do_PUT = do_DELETE = do_PATCH = do_POST

        def _forward(self) -> None:
            with lock:
                counts[f"{self.command} {urlsplit(self.path).path}"] += 1
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            upstream = http.client.HTTPConnection(host.hostname, host.port, timeout=120)
            try:
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                kept = [(k, v) for k, v in answer.getheaders() if k.lower() not in _HOP_BY_HOP]
                self._reply(answer.status, kept, data)
            finally:
                upstream.close()

        def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response(status)
            for key, value in headers:
                if key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.counting_proxy")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--target", required=True)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.target))
    server.daemon_threads = True
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
