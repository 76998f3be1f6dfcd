"""Keycloak down, slow or failing becomes one typed error and one calm page."""

from __future__ import annotations

import dataclasses
import re
import subprocess

import pytest
import responses
from flask import Flask

from provider import create_app
from provider.config import Settings
from provider.flows.steps.identify_check import identify
from provider.keycloak import (
    IdentityServiceUnavailable,
    KeycloakGateway,
    ServiceCredentialRejected,
)
from provider.services import Services
from tests.conftest import KeycloakUnderTest, RealmUnderTest
from tests.support.cli import run_module
from tests.support.students import enrol_student


def _gateway_at(settings: Settings, **changes: object) -> KeycloakGateway:
    return KeycloakGateway(dataclasses.replace(settings.keycloak, **changes))


def test_unreachable_keycloak_is_unavailable(settings: Settings) -> None:
    gateway = _gateway_at(settings, url="http://127.0.0.1:9", timeout_seconds=2)
    with pytest.raises(IdentityServiceUnavailable):
        gateway.find_user("anyone")


def test_wrong_service_secret_is_a_credential_error(settings: Settings) -> None:
    gateway = _gateway_at(settings, client_secret="wrong-secret")
    with pytest.raises(ServiceCredentialRejected):
        gateway.ping()


def test_server_error_mid_request_is_unavailable(
    gateway: KeycloakGateway, pending_user: str, settings: Settings
) -> None:
    gateway.ping()  # the token is fetched from the real server first
    kc = settings.keycloak
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add(
            responses.PUT,
            re.compile(rf"{re.escape(kc.url)}/admin/realms/{kc.realm}/users/.*/reset-password"),
            status=503,
            body="Service Unavailable",
        )
        with pytest.raises(IdentityServiceUnavailable):
            gateway.set_password(pending_user, "orbit lantern velvet 1987")


def test_readyz_reports_keycloak_down(settings: Settings) -> None:
    down = dataclasses.replace(
        settings, keycloak=dataclasses.replace(settings.keycloak, url="http://127.0.0.1:9")
    )
    client = create_app(down).test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json == {
        "status": "unavailable",
        "checks": {"keycloak": "unavailable", "database": "ok", "rate_limits": "ok"},
    }
    assert client.get("/healthz").status_code == 200


def test_readyz_ok_with_real_keycloak(app: Flask) -> None:
    response = app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.json == {
        "status": "ok",
        "checks": {"keycloak": "ok", "database": "ok", "rate_limits": "ok"},
    }


def _umpass(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_module("provider.cli", env, *args)


def test_cli_check_ok(keycloak_server: KeycloakUnderTest, realm: RealmUnderTest, tmp_path) -> None:
    env = realm.env(keycloak_server, DATABASE_URL=f"sqlite:///{tmp_path}/x.db")
    result = _umpass(env, "check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: Keycloak")


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"UMPASS_KC_CLIENT_SECRET": "wrong"}, "refused client 'umpass-activation'"),
        (
            {"UMPASS_KEYCLOAK_URL": "http://127.0.0.1:9"},
            "cannot use Keycloak at http://127.0.0.1:9",
        ),
        ({"UMPASS_KC_CLIENT_SECRET": ""}, "UMPASS_KC_CLIENT_SECRET is not set"),
        ({"UMPASS_KEYCLOAK_URL": "keycloak.local"}, "is not an http(s) URL"),
        # Bad deployment: each a line that says what to fix, no password echoed.
        (
            {"UMPASS_RATELIMIT_STORAGE": "redis://:wrong@127.0.0.1:9/0"},
            "the rate-limit store at redis://127.0.0.1:9/0 does not answer",
        ),
        (
            {"DATABASE_URL": "postgresql+psycopg://umpass:wrong@127.0.0.1:9/umpass"},
            "cannot open the database at postgresql+psycopg://127.0.0.1:9/umpass",
        ),
        (
            {
                "UMPASS_BROKER_REDIRECT_URI": "https://sso.example.edu/realms/x/broker/a/endpoint",
            },
            "but browsers are sent to https://sso.example.edu/realms/",
        ),
    ],
)
def test_cli_bad_configuration_is_one_line(
    keycloak_server: KeycloakUnderTest, realm: RealmUnderTest, tmp_path, override, expected
) -> None:
    env = realm.env(keycloak_server, **{"DATABASE_URL": f"sqlite:///{tmp_path}/x.db", **override})
    result = _umpass(env, "check")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: ")
    assert expected in result.stderr
    assert "wrong" not in result.stderr  # the secret is never echoed


def test_cli_serve_port_in_use_is_one_line(
    keycloak_server: KeycloakUnderTest, realm: RealmUnderTest, tmp_path
) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = realm.env(keycloak_server, DATABASE_URL=f"sqlite:///{tmp_path}/x.db")
        result = _umpass(env, "serve", "--port", str(port))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_wrong_realm_is_a_credential_error_not_a_missing_user(settings: Settings) -> None:
    gateway = _gateway_at(settings, realm="no-such-realm")
    with pytest.raises(ServiceCredentialRejected):
        gateway.find_user("anyone")


def test_silent_keycloak_times_out_within_bounds(settings: Settings) -> None:
    """A Keycloak that accepts and never answers costs a student at most two of the
    gateway's own timeouts, never python-keycloak's 60 s default: shown by what the server
    received and what the client gave up on, not by a clock."""
    import socket

    with socket.socket() as silent:  # the kernel accepts connections; nothing answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        gateway = _gateway_at(settings, url=f"http://127.0.0.1:{port}", timeout_seconds=1)
        with pytest.raises(IdentityServiceUnavailable) as caught:
            gateway.find_user("anyone")
        # Every attempt is still queued, its request in the buffer (the client hung up).
        silent.setblocking(False)
        requests_seen = []
        while True:
            try:
                conn, _ = silent.accept()
            except BlockingIOError:
                break
            with conn:
                conn.setblocking(True)
                requests_seen.append(conn.recv(4096).split(b" HTTP/", 1)[0])
    # What ended each wait: a read timeout, the gateway's 1 s.
    reasons = []
    cause: BaseException | None = caught.value
    while cause is not None:
        reasons.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    timeouts = {found for r in reasons for found in re.findall(r"read timeout=([0-9.]+)\)", r)}
    assert timeouts == {"1"}, reasons
    # python-keycloak's token client retries once whatever we ask (its constructor takes
    # no max_retries): two attempts, so the bound is two timeouts.
    token = f"POST /realms/{settings.keycloak.realm}/protocol/openid-connect/token".encode()
    assert requests_seen == [token, token]


def test_no_username_in_logs_when_keycloak_fails(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from provider.logging_setup import JsonFormatter

    gateway = _gateway_at(settings, url="http://127.0.0.1:9", timeout_seconds=1)
    with caplog.at_level(logging.DEBUG), pytest.raises(IdentityServiceUnavailable):
        gateway.find_user("s7654321")
    lines = [JsonFormatter().format(r) for r in caplog.records]
    assert lines, "the failure should be logged"
    assert not any("s7654321" in line for line in lines)


def test_keycloak_down_during_correct_attempts_never_locks_the_student(
    settings: Settings, services: Services
) -> None:
    """Five right answers while Keycloak is down count as no attempt at all: once it is
    back, the student gets in at once (before, the ID stayed locked for good)."""
    student = enrol_student(services, "u")
    down = Services.assemble(
        settings, gateway=_gateway_at(settings, url="http://127.0.0.1:9", timeout_seconds=1)
    )
    details = {
        "typed_user_id": student.user_id,
        "typed_code": student.code,
        "date_of_birth": student.date_of_birth,
        "typed_id_last4": student.id_last4,
    }
    for _ in range(5):
        with pytest.raises(IdentityServiceUnavailable):
            identify(down, **details)
    assert identify(services, **details).user_id == student.user_id
