"""The throwaway PostgreSQL (scripts/devstack/postgres.py) that the suite and the stack use."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import psycopg
import pytest
from devstack import postgres as pg


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_data_survives_stop_and_start_on_the_same_port() -> None:
    server = pg.start_throwaway()
    try:
        url = server.create_database("kept")
        assert url == f"postgresql+psycopg://umpass@127.0.0.1:{server.port}/kept"
        assert server.jdbc_url("kept") == f"jdbc:postgresql://127.0.0.1:{server.port}/kept"
        with server.connect("kept") as conn:
            conn.execute("CREATE TABLE t (n int)")
            conn.execute("INSERT INTO t VALUES (7)")
        held = server.connect("kept")  # an open session does not hold up the stop
        assert server.stop()
        assert not server.is_running() and not _accepts(server.port)
        with pytest.raises(psycopg.OperationalError):
            held.execute("SELECT 1")
        held.close()
        server.start()
        with server.connect("kept") as conn:
            assert conn.execute("SELECT n FROM t").fetchall() == [(7,)]
        server.restart()
        assert server.is_running()
    finally:
        server.destroy()
    assert not server.workdir.exists()
    assert not server.stop()  # stopping twice is harmless


def test_a_work_directory_postgres_cannot_reach_is_one_clear_error(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    if os.geteuid() != 0:
        # Not root: the server runs as us, and a directory of ours is never closed to us.
        pg.start_throwaway(closed / "pg").destroy()
        return
    with pytest.raises(pg.PostgresError, match="the postgres user cannot reach"):
        pg.start_throwaway(closed / "pg")
