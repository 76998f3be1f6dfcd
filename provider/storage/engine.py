"""The service's database: one SQLAlchemy engine per application."""

from __future__ import annotations

import contextlib
import os
import select
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Insert, create_engine, event, exc, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 10_000
# A server database (PostgreSQL): each worker process keeps a small pool. A request holds
# a connection only for one short transaction at a time, so a pool below a threaded
# worker's thread count still serves it; beyond the overflow a request waits
# POOL_TIMEOUT, then fails (503) rather than hanging. A dead server is noticed within
# CONNECT_TIMEOUT, and `_discard_if_cut` replaces connections a database restart cut.
POOL_SIZE = 8
MAX_OVERFLOW = 16
POOL_TIMEOUT = 10
CONNECT_TIMEOUT = 5
# Execution option marking connections that only read (see `read_only`).
READ_ONLY = "umpass_read_only"


def make_engine(database_url: str) -> Engine:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        engine = create_engine(
            url,
            pool_size=POOL_SIZE,
            max_overflow=MAX_OVERFLOW,
            pool_timeout=POOL_TIMEOUT,
            connect_args={"connect_timeout": CONNECT_TIMEOUT},
        )
        event.listen(engine, "checkout", _discard_if_cut)
        return engine
    if url.database and url.database != ":memory:":
        path = Path(url.database)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Proofing hashes and audit trails live here: readable by the service's user only
        # (SQLite gives its -wal and -shm files the database file's permissions).
        # Only a file that does not exist yet: closing any descriptor of an open SQLite
        # file drops every POSIX lock this process holds on it, and with them SQLite's
        # (the database was corrupted when a second engine opened the same file).
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
    engine = create_engine(url, pool_pre_ping=True)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        # WAL lets readers run beside the one writer; concurrent writers wait for the
        # lock instead of failing at once. NORMAL sync is durable across process crashes.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()
        # Take transactions out of pysqlite's hands (it begins them lazily and can leave
        # a pooled connection reading an old snapshot); SQLAlchemy's begin does it below.
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _sqlite_begin(connection: Any) -> None:
        if connection.get_execution_options().get(READ_ONLY):
            connection.exec_driver_sql("BEGIN")  # a snapshot beside the writer (WAL)
        else:
            # IMMEDIATE: take the write lock up front, so a read-then-write transaction
            # waits its turn (busy_timeout) instead of failing on a snapshot gone stale.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _discard_if_cut(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Instead of pre-ping's round trip on every checkout (~21 per activation, issue 17),
    look at the pooled connection's socket. An idle connection's server never speaks
    first: a readable socket means it wrote its goodbye (a restart or shutdown sends
    FATAL 57P01, then closes) or the connection closed. Raising DisconnectionError makes
    the pool drop it and check out another (SQLAlchemy retries up to three times, then
    connects anew). tests/topology restarts PostgreSQL mid-flow through this."""
    if dbapi_connection.closed:
        raise exc.DisconnectionError("the connection is closed")
    readable, _, _ = select.select([dbapi_connection.fileno()], [], [], 0)
    if readable:
        raise exc.DisconnectionError("the server spoke first: it has cut the connection")


def read_only(engine: Engine) -> Engine:
    """The same database for transactions that never write: on SQLite they do not queue
    behind writers for the write lock; on a server database each statement runs on its
    own (autocommit), without the BEGIN and the ROLLBACK around it, two round trips fewer
    per read (every request reads its flow). Every statement still sees one consistent
    snapshot; a read of two statements may see a commit between them."""
    if engine.dialect.name == "sqlite":
        return engine.execution_options(**{READ_ONLY: True})
    return engine.execution_options(**{READ_ONLY: True}, isolation_level="AUTOCOMMIT")


def bind_of(sessions: sessionmaker[Session]) -> Engine:
    """The engine (with its execution options, e.g. read-only) a sessionmaker binds to: for
    the hot paths that talk Core on a connection, where an ORM session's unit of work
    costs about twice the CPU per transaction (issue 17)."""
    bind = sessions.kw["bind"]
    if not isinstance(bind, Engine):
        raise TypeError("sessions bound to an Engine are needed here")
    return bind


def insert_unless_present(dialect_name: str, table: Any, *keys: str) -> Insert:
    """INSERT … ON CONFLICT (keys) DO NOTHING on either database: a row a parallel or an
    earlier writer made is left as it is, not failed on."""
    if dialect_name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table).on_conflict_do_nothing(index_elements=list(keys))


def check(engine: Engine) -> None:
    """Raise unless the database answers a trivial query."""
    with read_only(engine).connect() as conn:
        conn.execute(text("SELECT 1"))
