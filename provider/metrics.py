"""The Prometheus scrape: the funnel, the code-send budget, the lockouts and the recoveries.

Its own module, beside the help desk rather than in it: it reads the help desk's figures and
the student flow's send budget, and the help desk stays free of the flow.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, abort, current_app, request
from flask.typing import ResponseReturnValue
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from provider.guards import send_budget
from provider.helpdesk import funnel as funnel_data
from provider.helpdesk import lockouts as lockout_data
from provider.helpdesk import recoveries as recovery_data
from provider.keycloak import ADMIN_CALLS
from provider.services import services

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> ResponseReturnValue:
    """The scrape, behind a bearer token (404 without it: the endpoint is not advertised)."""
    token = current_app.config.get("UMPASS_METRICS_TOKEN") or ""
    sent = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not token or not hmac.compare_digest(token.encode(), sent.encode()):
        abort(404)
    registry = CollectorRegistry(auto_describe=False)
    svc = services(current_app)
    registry.register(funnel_data.FunnelCollector(svc))
    registry.register(send_budget.SendsCollector(svc.reads, svc.settings.sms_daily_budget))
    registry.register(lockout_data.LockoutCollector(svc))
    registry.register(recovery_data.RecoveriesCollector(svc))
    registry.register(ADMIN_CALLS)  # this worker's own count (one process per scrape)
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
