"""`umpass serve`: the application under gunicorn (pre-forked workers, threads in each).

Why gunicorn: worker processes use every core of a replica despite the GIL, a stuck or
leaking worker is replaced (`max_requests`), SIGHUP reloads without dropping requests, and
it passes X-Forwarded-* through untouched, so the one place that decides which forwarded
address to believe is the app's ProxyFix (UMPASS_TRUSTED_PROXIES). Its own forwarded
handling is switched off for the same reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from provider.config import Settings


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, factory: Callable[[], Flask], options: dict[str, Any]) -> None:
        self._factory = factory
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self._factory()


def options(settings: Settings, *, bind: str, workers: int, threads: int) -> dict[str, Any]:
    """Gunicorn's settings for the service; `bind` is `host:port` (or `fd://N`)."""
    return {
        "bind": bind,
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "timeout": 60,  # a worker silent this long is replaced; Keycloak calls time out sooner
        "graceful_timeout": 30,
        "keepalive": 5,  # above nothing: nginx keeps upstream connections briefly
        "max_requests": 20_000,
        "max_requests_jitter": 2_000,
        "forwarded_allow_ips": "",  # the app's ProxyFix decides (provider/proxy.py)
        "proc_name": "umpass",
        "accesslog": None,  # the app logs what matters, without personal data
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
    }


def serve(factory: Callable[[], Flask], gunicorn_options: dict[str, Any]) -> None:
    """Run gunicorn; each worker calls `factory` after the fork for its own app."""
    _Gunicorn(factory, gunicorn_options).run()


def run(settings: Settings, *, host: str, port: int, workers: int, threads: int) -> None:
    def factory() -> Flask:
        # Each worker builds its own app after the fork: database pools and Keycloak
        # connections are never shared between processes.
        from provider import create_app

        return create_app(settings)

    serve(factory, options(settings, bind=f"{host}:{port}", workers=workers, threads=threads))
