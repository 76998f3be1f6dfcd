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

    monkeypatch.setenv("UMPASS_DEV_KEYCLOAK_DIR", str(tmp_path / "keycloak"))
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


def test_a_throwaway_never_replaces_one_a_live_test_run_owns(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import json
    import subprocess
    import sys

    monkeypatch.setenv("UMPASS_CACHE_DIR", str(tmp_path))
    state = kc_server.state_path("test")
    state.parent.mkdir(parents=True)
    other_run = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record = {"instance": "test", "pid": other_run.pid, "url": "x", "management_url": "x"}
        state.write_text(json.dumps({**record, "log_file": "x", "owner": other_run.pid}))
        with pytest.raises(kc_server.KeycloakStartError, match="another test run"):
            kc_server.start_throwaway("irrelevant")
        assert state.exists(), "the other run's record was thrown away"
    finally:
        other_run.kill()
        other_run.wait()


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


def test_a_stack_whose_port_is_taken_while_starting_starts_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The topology picks a dozen ports before its parts bind them; one taken meanwhile
    fails that part, and the whole stack starts again on other ports. (The parts are not
    started here: what is tested is how a failure is told apart and what follows.)"""
    from devstack.stack import Stack, StackError

    holders: list[socket.socket] = []
    tried: list[int] = []

    def start(stack: Stack, _progress: object, *, fast_hash: bool) -> None:
        tried.append(stack.nginx.service_port)
        if len(tried) == 1:  # someone else binds nginx's port before nginx does
            holder = socket.socket()
            holder.bind(("127.0.0.1", stack.nginx.service_port))
            holder.listen()
            holders.append(holder)
            raise StackError("nginx start failed: bind() failed (98: Address already in use)")

    monkeypatch.setattr(Stack, "_start", start)
    monkeypatch.setattr(Stack, "down", lambda _stack, keep_data=False: None)  # none started
    try:
        stack = Stack.up(tmp_path / "stack")
    finally:
        for holder in holders:
            holder.close()
    assert len(tried) == 2 and tried[1] != tried[0]
    assert stack.nginx.service_port == tried[1]


def test_a_stack_failure_with_every_port_free_is_raised(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from devstack.stack import Stack, StackError, StackPortTaken

    tried: list[int] = []

    def start(stack: Stack, _progress: object, *, fast_hash: bool) -> None:
        tried.append(stack.nginx.service_port)
        raise StackError("PostgreSQL did not start")

    monkeypatch.setattr(Stack, "_start", start)
    monkeypatch.setattr(Stack, "down", lambda _stack, keep_data=False: None)
    with pytest.raises(StackError, match="PostgreSQL did not start") as raised:
        Stack.up(tmp_path / "stack")
    assert not isinstance(raised.value, StackPortTaken)
    assert len(tried) == 1


# A server that renames its process, as gunicorn's master does when setproctitle is there.
_RENAMED_SERVER = """
import socket, sys, time
import setproctitle
listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
setproctitle.setproctitle("gunicorn: master [umpass]")
while True:
    listener.accept()[0].close()
"""


def test_a_renamed_server_is_still_ours_to_kill_and_restart(tmp_path: Path) -> None:
    import sys

    from devstack.background import Background
    from devstack.processes import free_port

    port = free_port()
    server = Background(
        name="renamed",
        argv=[sys.executable, "-c", _RENAMED_SERVER, str(port)],
        port=port,
        log_file=tmp_path / "renamed.log",
    )
    server.start()
    try:
        assert server.answers()
        first = server.pid
        server.kill()  # a crash: the port is free again
        assert not server.is_ours() and not server.answers()
        server.start()  # the same port: refused if the first still held it
        assert server.answers() and server.pid != first
    finally:
        server.stop(grace=5.0)
    assert not server.answers()


def test_the_dev_server_belongs_to_the_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its data beside the .env that holds its admin password: a second clone gets its own
    (a shared one in the machine-wide cache refused every clone's password but the first)."""
    monkeypatch.delenv("UMPASS_DEV_KEYCLOAK_DIR", raising=False)
    checkout = Path(kc_server.__file__).resolve().parents[2]
    assert kc_server.home("dev").is_relative_to(checkout / "var")
    assert kc_server.state_path("dev").is_relative_to(checkout / "var")
    assert not kc_server.home("test").is_relative_to(checkout)
