import time

from sqlalchemy import text

from provider.storage.engine import make_engine, read_only


def test_readers_do_not_queue_behind_a_writer(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/e.db")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
    with engine.begin() as writer:  # holds the write lock (BEGIN IMMEDIATE)
        writer.execute(text("UPDATE t SET x = 2"))
        started = time.monotonic()
        with read_only(engine).connect() as reader:
            assert reader.execute(text("SELECT x FROM t")).scalar() == 1  # its snapshot
        assert time.monotonic() - started < 1.0  # no wait for the lock (busy timeout 10 s)
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
