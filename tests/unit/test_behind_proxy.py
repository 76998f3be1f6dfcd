"""Behind a TLS proxy: the origin check that replaces Flask-WTF's Referer check, the
forwarded address and scheme, and the warning for a proxy that forwards nothing.

These drive the app in-process; tests/topology proves the same through nginx and gunicorn.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from provider import create_app
from provider.config import load_settings
from provider.csrf import origin_of

PUBLIC = "https://activate.example.edu"
_CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def _https_app(tmp_path: Path, trusted_proxies: str) -> Flask:
    return create_app(
        load_settings(
            {
                "UMPASS_KC_CLIENT_SECRET": "x",
                "UMPASS_TESTING": "1",
                "DATABASE_URL": f"sqlite:///{tmp_path}/t.db",
                "UMPASS_BASE_URL": PUBLIC,
                "UMPASS_TRUSTED_PROXIES": trusted_proxies,
            }
        )
    )


@pytest.fixture
def proxied_app(tmp_path: Path) -> Flask:
    """Behind one trusted proxy."""
    return _https_app(tmp_path, "1")


def _via_proxy(**headers: str) -> dict[str, str]:
    return {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https", **headers}


def _restart(client: FlaskClient, **headers: str) -> int:
    """POST the identify page's "start again" form with a valid token; the status."""
    page = client.get("/activate/identify", headers=_via_proxy())
    token = _CSRF.search(page.text)
    assert token, page.text[:300]
    return client.post(
        "/activate/restart", data={"csrf_token": token.group(1)}, headers=_via_proxy(**headers)
    ).status_code


def test_a_form_posted_over_https_from_our_origin_is_accepted(proxied_app: Flask) -> None:
    client = proxied_app.test_client()
    assert _restart(client, Origin=PUBLIC) == 302
    # A browser that strips Referer still sends Origin; one that sends only Referer too.
    assert _restart(client, Referer=f"{PUBLIC}/activate/identify") == 302


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "http://activate.example.edu"},  # the same host over plain HTTP
        {"Origin": "https://activate.example.edu:8443"},
        {"Referer": "https://evil.example/activate/identify"},
        {"Origin": "null"},  # what a no-referrer page or a sandboxed frame sends
        {"Origin": "null", "Referer": "https://evil.example/"},
        {"Origin": "https://activate.example.edu:abc"},  # unparsable: refused, not a 500
        {},  # neither: no browser posts a form so over HTTPS
    ],
)
def test_a_post_from_anywhere_else_is_refused_and_changes_nothing(
    proxied_app: Flask, headers: dict[str, str]
) -> None:
    assert _restart(proxied_app.test_client(), **headers) == 400


def test_the_token_is_still_required(proxied_app: Flask) -> None:
    client = proxied_app.test_client()
    client.get("/activate/identify", headers=_via_proxy())
    response = client.post(
        "/activate/restart", data={"csrf_token": "forged"}, headers=_via_proxy(Origin=PUBLIC)
    )
    assert response.status_code == 400


def test_cookies_are_secure_and_pages_keep_referrers_to_ourselves(proxied_app: Flask) -> None:
    response = proxied_app.test_client().get("/activate/identify", headers=_via_proxy())
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    for cookie in response.headers.getlist("Set-Cookie"):
        assert "Secure" in cookie, cookie


def test_origins_compare_scheme_host_and_port() -> None:
    assert origin_of("https://Activate.Example.edu:443/a?b") == "https://activate.example.edu"
    assert origin_of("http://localhost:8080/") == "http://localhost:8080"
    assert origin_of("not a url") == ""


def test_a_proxy_that_forwards_no_address_is_named_once(
    proxied_app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    client = proxied_app.test_client()
    with caplog.at_level(logging.WARNING, logger="provider.proxy"):
        client.get("/healthz")  # load balancers check replicas directly: not a problem
        assert not caplog.records
        client.get("/activate/identify")
        client.get("/activate/identify")
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "X-Forwarded-For" in warnings[0]


@pytest.fixture
def untrusting_app(tmp_path: Path) -> Flask:
    """Told to trust no proxy (UMPASS_TRUSTED_PROXIES=0)."""
    return _https_app(tmp_path, "0")


def test_a_proxy_left_untrusted_is_named_once(
    untrusting_app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    client = untrusting_app.test_client()
    with caplog.at_level(logging.WARNING, logger="provider.proxy"):
        client.get("/activate/identify")  # straight from a browser: nothing to say
        assert not caplog.records
        for _ in range(2):
            client.get("/activate/identify", headers={"X-Forwarded-For": "203.0.113.7"})
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "UMPASS_TRUSTED_PROXIES=0" in warnings[0]
    # Untrusted, the forwarded scheme changes nothing: an HTTPS service still wants an
    # Origin on every post.
    page = client.get("/activate/identify")
    token = _CSRF.search(page.text)
    assert token
    refused = client.post("/activate/restart", data={"csrf_token": token.group(1)})
    assert refused.status_code == 400
