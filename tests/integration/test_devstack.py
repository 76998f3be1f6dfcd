"""The project's Keycloak runner refuses bad situations with one clear line."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from devstack import keycloak as kc_server


def test_port_in_use_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    monkeypatch.setenv("UMPASS_CACHE_DIR", str(tmp_path))  # no server of ours is known here
    monkeypatch.setenv("KEYCLOAK_ADMIN_USER", "admin")
    monkeypatch.setenv("KEYCLOAK_ADMIN_PASSWORD", "x")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = kc_server.main(["start", "--instance", "test", "--http-port", str(port)])
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        f"error: HTTP port {port} on 127.0.0.1 is in use: stop what holds it "
        "or choose another port (--http-port / --management-port)\n"
    )
    assert not any(tmp_path.iterdir())  # nothing was fetched or unpacked


def test_missing_admin_credentials_are_reported(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:
    monkeypatch.setenv("UMPASS_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("KEYCLOAK_ADMIN_USER", raising=False)
    monkeypatch.delenv("KEYCLOAK_ADMIN_PASSWORD", raising=False)
    assert kc_server.main(["start", "--instance", "test"]) == 2
    assert capsys.readouterr().err == (
        "error: KEYCLOAK_ADMIN_USER and KEYCLOAK_ADMIN_PASSWORD must be set\n"
    )


def test_running_test_server_reports_ready(keycloak_server) -> None:
    import os

    if os.environ.get("UMPASS_TEST_KEYCLOAK_URL"):
        pytest.fail("run without UMPASS_TEST_KEYCLOAK_URL to test the project's own server")
    running = kc_server.status("test")
    assert running is not None, "the test server this session started is gone"
    assert running.url == keycloak_server.url
    assert kc_server.is_ready(running.management_url)


def test_stop_never_kills_a_process_that_is_not_ours(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import json
    import os

    monkeypatch.setenv("UMPASS_CACHE_DIR", str(tmp_path))
    state = kc_server.state_path("dev")
    state.parent.mkdir(parents=True)
    # A stale record pointing at this very test process: stop must leave it alone.
    state.write_text(
        json.dumps(
            {
                "instance": "dev",
                "pid": os.getpid(),
                "url": "x",
                "management_url": "x",
                "log_file": "x",
            }
        )
    )
    assert kc_server.stop("dev") is False
    assert not state.exists()


def test_a_port_taken_between_choosing_and_binding_is_chosen_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The race every server that binds its own port runs (slapd, Keycloak, gunicorn): the
    port found free is taken before the server binds it. Forced here by handing slapd a
    port that is already held."""
    from devstack import processes, slapd

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        handed: list[int] = []
        choose = processes.free_port

        def taken_first() -> int:
            handed.append(taken if not handed else choose())
            return handed[-1]

        monkeypatch.setattr(processes, "free_port", taken_first)
        server = slapd.start()
        try:
            assert handed[0] == taken and len(handed) == 2
            assert server.url == f"ldap://127.0.0.1:{handed[1]}"
        finally:
            slapd.stop(server)


def test_a_failure_that_is_not_a_taken_port_is_raised_at_once() -> None:
    from devstack.processes import on_free_ports

    calls: list[tuple[int, ...]] = []

    def refuse(*ports: int) -> None:
        calls.append(ports)
        raise RuntimeError("bad configuration")

    with pytest.raises(RuntimeError, match="bad configuration"):
        on_free_ports(refuse, 2, RuntimeError)
    assert len(calls) == 1 and len(set(calls[0])) == 2
