"""The demo campus app's webhook receiver: what a downstream system (the LMS, mail) does
with UMPASS's events. Self-contained on purpose, so it can be copied: no UMPASS code.

    POST /demo/hooks    one event, signed the Standard Webhooks way (webhook-id,
                        webhook-timestamp, webhook-signature = "v1,<base64 HMAC-SHA256 of
                        id.timestamp.body>" with the secret "whsec_<base64>")
    GET  /demo/hooks    the events taken so far (JSON), for demos and tests

It answers 2xx only once the event is safely handled (UMPASS retries anything else), takes
an event id it has seen already as done (UMPASS delivers at least once), and refuses a
timestamp more than five minutes away (a replayed old request).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from typing import Any

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

TOLERANCE = 5 * 60


def signature_ok(secret: str, headers: Any, body: bytes, now: float) -> bool:
    msg_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    if not msg_id or not stamp.isdigit() or abs(now - int(stamp)) > TOLERANCE:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    expected = "v1," + base64.b64encode(mac).decode()
    # Several signatures may be sent (while a secret is being rotated): any one will do.
    return any(
        hmac.compare_digest(sent, expected) for sent in headers.get("webhook-signature", "").split()
    )


def receiver(secret: str) -> Blueprint:
    bp = Blueprint("demo_hooks", __name__)
    taken: dict[str, dict[str, Any]] = {}  # a real system keeps these in its database
    lock = threading.Lock()

    @bp.post("/hooks")
    def take() -> ResponseReturnValue:
        body = request.get_data()
        if not signature_ok(secret, request.headers, body, time.time()):
            return "", 400  # not from UMPASS, altered, or replayed late: never retried into
        event = json.loads(body)
        with lock:
            # Seen already: done already (a redelivery), so just say so.
            taken.setdefault(request.headers["webhook-id"], event)
        return "", 204

    @bp.get("/hooks")
    def show() -> ResponseReturnValue:
        with lock:
            return jsonify([{"id": k, **v} for k, v in taken.items()])

    return bp
