"""The admin API connection takes the environment's proxy and CA bundle once, when it is
made, and requests does not read the environment again on every call."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from provider.keycloak_connection import ServiceAccount, admin_api

ACCOUNT = ServiceAccount("umpass", "umpass-provider", "secret")


def test_environment_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.edu:3128")
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/university/ca.pem")
    connection = admin_api("https://sso.example.edu", ACCOUNT, timeout=5).connection
    assert connection._s.trust_env is False
    assert connection._s.proxies["https"] == "http://proxy.example.edu:3128"
    assert connection.verify == "/etc/university/ca.pem"


def test_no_proxy_and_given_bundle_win(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    given = tmp_path / "keycloak-ca.pem"  # read when the connection is made
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", given)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.edu:3128")
    monkeypatch.setenv("NO_PROXY", "sso.example.edu")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/university/ca.pem")
    connection = admin_api(
        "https://sso.example.edu", ACCOUNT, timeout=5, ca_bundle=str(given)
    ).connection
    assert "https" not in connection._s.proxies
    assert connection.verify == str(given)


def test_system_authorities_without_a_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "HTTPS_PROXY", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    connection = admin_api("https://sso.example.edu", ACCOUNT, timeout=5).connection
    assert connection.verify is True
    assert connection._s.proxies == {}
