"""Per-client-address request limits (Flask-Limiter).

The client address is the socket's peer unless UMPASS_TRUSTED_PROXIES says how many
proxies in front of the service may set X-Forwarded-For (werkzeug's ProxyFix).
"""

from __future__ import annotations

from flask import current_app, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

limiter = Limiter(key_func=get_remote_address, default_limits=[])


def identify_limit() -> str:
    return current_app.config["UMPASS_IDENTIFY_LIMIT"]


def not_identify_post() -> bool:
    return not (request.method == "POST" and (request.view_args or {}).get("name") == "identify")


def send_limit() -> str:
    return current_app.config["UMPASS_SEND_LIMIT"]


def not_code_send() -> bool:
    """Only "Send code" posts count against the per-address sending limit."""
    return not (
        request.method == "POST"
        and (request.view_args or {}).get("name") == "contacts"
        and request.form.get("action", "").startswith("send-")
    )
