import sqlite3
import subprocess
import sys

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from provider.storage.engine import make_engine, read_only


def test_readers_do_not_queue_behind_a_writer(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/e.db")

    # Registered after make_engine's own listener, so it has the last word: a connection
    # that met the write lock would fail at once instead of waiting out the busy timeout
    # (which the single thread holding that lock would never let end).
    @event.listens_for(engine, "connect")
    def _never_wait(dbapi_connection, _record) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=0")

    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
    with engine.begin() as writer:  # holds the write lock (BEGIN IMMEDIATE)
        writer.execute(text("UPDATE t SET x = 2"))
        # Not blocked, and not refused: it never asked for the lock the writer holds.
        with read_only(engine).connect() as reader:
            assert reader.execute(text("SELECT x FROM t")).scalar() == 1  # its snapshot
        # The same read through a writing connection does ask for the lock: refused.
        with pytest.raises(OperationalError, match="database is locked"), engine.connect() as other:
            other.execute(text("SELECT x FROM t"))
    with read_only(engine).connect() as reader:
        assert reader.execute(text("SELECT x FROM t")).scalar() == 2


def test_writers_see_each_others_commits_across_connections(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/e.db")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    for n in range(3):
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})
    with read_only(engine).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 3


def test_the_sqlite_file_is_readable_by_its_owner_only(tmp_path) -> None:
    path = tmp_path / "data" / "umpass.db"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.execute(text("create table t (x integer)"))
    assert path.stat().st_mode & 0o777 == 0o600
    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or wal.stat().st_mode & 0o777 == 0o600


def test_a_second_engine_on_the_same_file_keeps_the_first_ones_locks(tmp_path) -> None:
    """Closing any descriptor of an open SQLite file drops this process's POSIX locks on
    it: a second engine must not open the file itself, or another process could write
    past a lock the first engine holds (it corrupted the suite's database)."""
    path = tmp_path / "umpass.db"
    # A rollback-journal database keeps its locks on the file itself, where a stray close()
    # shows at once (WAL moves the write lock to -shm, hiding it until recovery goes wrong).
    holder = sqlite3.connect(path, isolation_level=None)  # this process's connection
    holder.execute("CREATE TABLE t (x INTEGER)")
    try:
        holder.execute("BEGIN EXCLUSIVE")  # the write lock, held
        make_engine(f"sqlite:///{path}")
        other = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], timeout=0); "
                "c.execute('INSERT INTO t VALUES (1)'); c.commit()",
                str(path),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    assert other.returncode != 0 and "database is locked" in other.stderr
