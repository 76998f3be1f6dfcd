"""Liveness and readiness endpoints for load balancers and orchestrators."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import SQLAlchemyError

from provider import db
from provider.keycloak import GatewayError
from provider.services import services

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """The process is up and serving requests; checks nothing else."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """Ready when Keycloak's admin API and the database both answer."""
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
    ready = all(v == "ok" for v in checks.values())
    return jsonify(status="ok" if ready else "unavailable", checks=checks), 200 if ready else 503
