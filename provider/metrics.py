"""The Prometheus scrape: the funnel, the code-send budget, the lockouts, the recoveries, the
events waiting for downstream systems and the realm's health (also as JSON at
/metrics/realm-health).

Its own module, beside the help desk rather than in it: it reads the help desk's figures and
the student flow's send budget, and the help desk stays free of the flow.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, abort, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from provider.events.metrics import OutboxCollector
from provider.guards import send_budget
from provider.helpdesk import funnel as funnel_data
from provider.helpdesk import lockouts as lockout_data
from provider.helpdesk import recoveries as recovery_data
from provider.keycloak import ADMIN_CALLS
from provider.realm_health import views as realm_health_views
from provider.realm_health.metrics import RealmHealthCollector
from provider.services import services

bp = Blueprint("metrics", __name__)


def _authorized() -> None:
    """The bearer token, or 404 (the endpoints are not advertised)."""
    token = current_app.config.get("UMPASS_METRICS_TOKEN") or ""
    sent = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not token or not hmac.compare_digest(token.encode(), sent.encode()):
        abort(404)


@bp.get("/metrics/realm-health")
def realm_health() -> ResponseReturnValue:
    """The latest stored realm-health result as JSON, for monitoring (same token as the
    scrape): its status, when it was checked, and stale when too old."""
    _authorized()
    health = realm_health_views.current()  # stored by umpass realm-check; never Keycloak
    return jsonify(health.as_json()), 200, {"Cache-Control": "no-store"}


@bp.get("/metrics")
def metrics() -> ResponseReturnValue:
    """The scrape, behind a bearer token (404 without it: the endpoint is not advertised)."""
    _authorized()
    registry = CollectorRegistry(auto_describe=False)
    svc = services(current_app)
    registry.register(funnel_data.FunnelCollector(svc))
    registry.register(send_budget.SendsCollector(svc.reads, svc.settings.sms_daily_budget))
    registry.register(lockout_data.LockoutCollector(svc))
    registry.register(recovery_data.RecoveriesCollector(svc))
    registry.register(RealmHealthCollector(realm_health_views.current))
    registry.register(OutboxCollector(svc.reads))
    registry.register(ADMIN_CALLS)  # this worker's own count (one process per scrape)
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
