"""A pooled PostgreSQL connection the server has cut (a restart, an administrator's
terminate) is never handed to a request: the pool looks at the idle socket on checkout
and connects anew, without a ping's round trip (provider/storage/engine.py)."""

from __future__ import annotations

import secrets

from devstack.postgres import RunningPostgres
from sqlalchemy import text

from provider.storage.engine import make_engine


def test_a_connection_the_server_cut_is_replaced_on_checkout(postgres: RunningPostgres) -> None:
    engine = make_engine(postgres.create_database(f"live_{secrets.token_hex(4)}"))
    other = make_engine(postgres.create_database(f"live_{secrets.token_hex(4)}"))
    try:
        with engine.connect() as conn:
            pooled = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with other.connect() as admin:
            # With a timeout, terminate waits until the backend has gone (written its
            # goodbye and closed the socket).
            gone = text("SELECT pg_terminate_backend(:pid, 10000)")
            assert admin.execute(gone, {"pid": pooled}).scalar_one()
        with engine.connect() as conn:  # the same pooled connection, now cut
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != pooled
    finally:
        engine.dispose()
        other.dispose()


def test_a_live_idle_connection_is_kept(postgres: RunningPostgres) -> None:
    engine = make_engine(postgres.create_database(f"live_{secrets.token_hex(4)}"))
    try:
        pids = set()
        for _ in range(5):
            with engine.connect() as conn:
                pids.add(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        assert len(pids) == 1
    finally:
        engine.dispose()
