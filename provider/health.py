"""Liveness and readiness endpoints for load balancers and orchestrators."""

from __future__ import annotations

import logging
import threading
import time

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import SQLAlchemyError

from provider import limits
from provider.keycloak import GatewayError
from provider.services import services
from provider.storage import engine as db

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """The process is up and serving requests; checks nothing else."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """Ready when Keycloak's admin API, the database and the rate-limit store answer;
    `checks` names the one that does not.

    The answer is cached for a few seconds: anyone can call this, and it must not
    become a way to load Keycloak or take the connections students need.
    """
    checks = _cached_checks()
    ready = all(v == "ok" for v in checks.values())
    return jsonify(status="ok" if ready else "unavailable", checks=checks), 200 if ready else 503


READY_CACHE_SECONDS = 5.0
_cache_lock = threading.Lock()


def _cached_checks() -> dict[str, str]:
    app = current_app
    with _cache_lock:
        cached = app.extensions.get("umpass.readyz")
        if cached is not None and time.monotonic() - cached[0] < READY_CACHE_SECONDS:
            return dict(cached[1])
        checks = _run_checks()
        app.extensions["umpass.readyz"] = (time.monotonic(), checks)
        return dict(checks)


def _run_checks() -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        services(current_app).keycloak.ping()
        checks["keycloak"] = "ok"
    except GatewayError:
        checks["keycloak"] = "unavailable"
    try:
        db.check(services(current_app).engine)
        checks["database"] = "ok"
    except SQLAlchemyError:
        log.warning("database unavailable")
        checks["database"] = "unavailable"
    try:
        limits.check_storage()
        checks["rate_limits"] = "ok"
    except limits.STORAGE_ERROR:
        log.warning("rate-limit store unavailable")
        checks["rate_limits"] = "unavailable"
    return checks
