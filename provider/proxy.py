"""Behind a reverse proxy: who the client is and which scheme it used.

With UMPASS_TRUSTED_PROXIES=N the last N hops of X-Forwarded-For / X-Forwarded-Proto are
believed (werkzeug's ProxyFix), so a client's own X-Forwarded-For is never the address that
limits count. The WSGI server must pass those headers through untouched: gunicorn does
(`umpass serve`), waitress strips them unless told otherwise.

Two deployment mistakes make every student look like the proxy (the limits would then
count one address for everyone): a proxy that forwards without setting the headers, and a
proxy the service was not told to trust (UMPASS_TRUSTED_PROXIES=0 while requests carry
X-Forwarded-For). The first such request is logged in one line that says what to fix.
Health checks from a load balancer, which go to a replica directly, are left out.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from werkzeug.middleware.proxy_fix import ProxyFix

log = logging.getLogger(__name__)

UNPROXIED_PATHS = ("/healthz", "/readyz", "/metrics")


class TrustedProxies:
    """ProxyFix (with hops > 0), plus one warning for a proxy set up or trusted wrongly."""

    def __init__(self, app: Any, hops: int, *, https: bool) -> None:
        self._fixed = ProxyFix(app, x_for=hops, x_proto=hops, x_host=0) if hops else app
        self._hops = hops
        self._https = https
        self._warned = threading.Event()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if not self._warned.is_set() and not environ.get("PATH_INFO", "").startswith(
            UNPROXIED_PATHS
        ):
            self._check(environ)
        return self._fixed(environ, start_response)

    def _check(self, environ: dict[str, Any]) -> None:
        if not self._hops:
            if environ.get("HTTP_X_FORWARDED_FOR"):
                self._warned.set()
                log.warning(
                    "a request came through a proxy (X-Forwarded-For) but "
                    "UMPASS_TRUSTED_PROXIES=0: set it to the number of proxies in front of the "
                    "service, or the per-address limits count the proxy as every student"
                )
            return
        if not environ.get("HTTP_X_FORWARDED_FOR"):
            problem = "carries no X-Forwarded-For"
        elif self._https and environ.get("HTTP_X_FORWARDED_PROTO", "").lower() != "https":
            problem = "does not say X-Forwarded-Proto: https"
        else:
            return
        self._warned.set()
        log.warning(
            "UMPASS_TRUSTED_PROXIES=%d but a request %s: set X-Forwarded-For and "
            "X-Forwarded-Proto at the proxy (nginx: proxy_set_header), or the per-address "
            "limits count the proxy as every student",
            self._hops,
            problem,
        )
