"""CSRF protection: Flask-WTF's token, plus a check that a form came from our own origin.

Flask-WTF's strict-SSL check wants a same-host `Referer` on every HTTPS post, which fails
for anyone whose browser or privacy extension strips it, and compares it with the `Host`
header (whatever the proxy passed). We turn that check off and compare instead the
`Origin` header, which every current browser sends on a form post, with the public origin
the service is configured with (UMPASS_BASE_URL); `Referer` only stands in when a browser
sent no `Origin`. Pages are served with `Referrer-Policy: same-origin`, which keeps both
headers meaningful on our own posts (under `no-referrer` browsers send `Origin: null`)
and sends nothing to other sites.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, current_app, request
from flask_wtf.csrf import CSRFProtect


def origin_of(url: str) -> str:
    """`scheme://host[:port]`, lower-cased, default port dropped; "" for anything else."""
    try:
        parts = urlsplit(url)
        port_number = parts.port  # raises on a port that is not a number or out of range
    except ValueError:
        return ""
    if not parts.scheme or not parts.hostname:
        return ""
    scheme = parts.scheme.lower()
    default_port = {"http": 80, "https": 443}.get(scheme)
    port = f":{port_number}" if port_number and port_number != default_port else ""
    return f"{scheme}://{parts.hostname.lower()}{port}"


class OriginCheckedCSRF(CSRFProtect):
    def init_app(self, app: Flask) -> None:
        app.config["WTF_CSRF_SSL_STRICT"] = False  # replaced by the origin check below
        super().init_app(app)

    def protect(self, apply_exemptions: bool = False) -> None:
        super().protect(apply_exemptions)  # the token; exemptions as Flask-WTF applies them
        if request.method not in current_app.config["WTF_CSRF_METHODS"]:
            return
        if apply_exemptions and (not request.endpoint or self._is_exempt()):
            return
        ours = origin_of(current_app.config["UMPASS_BASE_URL"])
        sent = request.headers.get("Origin") or ""
        if sent and sent != "null":
            if origin_of(sent) != ours:
                self._error_response("The request came from another origin.")
            return
        if request.referrer:
            if origin_of(request.referrer) != ours:
                self._error_response("The referrer is another origin.")
            return
        # Neither header: no browser posts a form like that to an HTTPS service. A plain-HTTP
        # one (development, scripts on loopback) stays open to clients that send neither.
        # Decided by the configured address, not by how the request arrived, so that a
        # proxy left untrusted cannot turn the check off.
        if ours.startswith("https://"):
            self._error_response("The request did not say where it came from.")
