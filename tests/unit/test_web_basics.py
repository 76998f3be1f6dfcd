"""Headers, size limits and error pages, with no Keycloak behind the app."""

from __future__ import annotations

import pytest
from flask import Flask, request

from provider import create_app
from provider.config import Settings
from provider.keycloak import (
    GatewayRequestRefused,
    IdentityServiceUnavailable,
    KeycloakGateway,
)


class _DownGateway(KeycloakGateway):
    def ping(self) -> None:
        raise IdentityServiceUnavailable("down")


@pytest.fixture
def offline_app(offline_settings: Settings) -> Flask:
    app = create_app(offline_settings, gateway=_DownGateway(offline_settings.keycloak))

    @app.post("/echo")
    def echo() -> str:
        return str(len(request.form.get("x", "")))

    app.extensions["csrf"].exempt(echo)  # this test is about size, not CSRF

    @app.get("/boom")
    def boom() -> str:
        raise IdentityServiceUnavailable("down")

    @app.get("/refused")
    def refused() -> str:
        raise GatewayRequestRefused(400, "somethingOdd")

    return app


def test_security_headers(offline_app: Flask) -> None:
    response = offline_app.test_client().get("/")
    assert response.status_code == 200
    csp = response.headers["Content-Security-Policy"]
    for directive in (
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "script-src 'self'",
    ):
        assert directive in csp
    assert "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in response.headers  # plain HTTP here


def test_hsts_over_https(offline_app: Flask) -> None:
    response = offline_app.test_client().get("/", base_url="https://localhost")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_oversized_request_is_refused_cleanly(offline_app: Flask) -> None:
    client = offline_app.test_client()
    assert client.post("/echo", data={"x": "a" * 1000}).data == b"1000"
    response = client.post("/echo", data={"x": "a" * 200_000})
    assert response.status_code == 413
    assert b"too large" in response.data


def test_unavailable_keycloak_shows_a_calm_page(offline_app: Flask) -> None:
    response = offline_app.test_client().get("/boom")
    assert response.status_code == 503
    assert b"Nothing has been changed" in response.data
    assert b"Traceback" not in response.data


def test_unexpected_gateway_refusal_shows_a_calm_page(offline_app: Flask) -> None:
    offline_app.config["PROPAGATE_EXCEPTIONS"] = False  # as in production
    response = offline_app.test_client().get("/refused")
    assert response.status_code == 500
    assert b"Nothing has been changed" in response.data
    assert b"somethingOdd" not in response.data
