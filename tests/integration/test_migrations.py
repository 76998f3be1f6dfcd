"""The Alembic migrations on both databases the service supports: SQLite (the embedded
default) and PostgreSQL (what a university deploys)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import datetime

import pytest
from alembic import command
from devstack.postgres import RunningPostgres
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from provider.storage import migrate
from provider.storage.engine import make_engine


@pytest.fixture(params=["postgresql", "sqlite"])
def empty_engine(request: pytest.FixtureRequest, tmp_path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'm.db'}"
    else:
        postgres: RunningPostgres = request.getfixturevalue("postgres")
        url = postgres.create_database(f"migrate_{secrets.token_hex(4)}")
    engine = make_engine(url)
    yield engine
    engine.dispose()


def _run(engine: Engine, action: str, revision: str) -> None:
    config = migrate.alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, action)(config, revision)


def _check(engine: Engine) -> None:
    """Raise when the migrated schema differs from the models."""
    config = migrate.alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.check(config)


def test_up_down_and_up_again_match_the_models(empty_engine: Engine) -> None:
    _run(empty_engine, "upgrade", "head")
    _check(empty_engine)
    _run(empty_engine, "downgrade", "base")
    _run(empty_engine, "upgrade", "head")
    _check(empty_engine)


def test_one_open_code_migration_keeps_the_newest_and_enforces_it(empty_engine: Engine) -> None:
    _run(empty_engine, "upgrade", "0005")
    at = datetime(2026, 1, 1, 12, 0)
    later = datetime(2026, 3, 1, 12, 0)
    with empty_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO students (user_id, dob_hash, id_last4_hash, created_at) "
                "VALUES ('s1', 'd', 'i', :at)"
            ),
            {"at": at},
        )
        for n in range(3):  # three open codes, from before the rule
            conn.execute(
                text(
                    "INSERT INTO activation_codes (user_id, code_hash, issued_at, expires_at) "
                    "VALUES ('s1', :h, :at, :later)"
                ),
                {"h": f"h{n}", "at": at, "later": later},
            )
    _run(empty_engine, "upgrade", "head")
    with empty_engine.connect() as conn:
        still_open = conn.execute(
            text(
                "SELECT code_hash FROM activation_codes "
                "WHERE used_at IS NULL AND revoked_at IS NULL"
            )
        ).all()
    assert still_open == [("h2",)]
    # The partial unique index: a second open code fails, a revoked or used one does not.
    insert = text(
        "INSERT INTO activation_codes (user_id, code_hash, issued_at, expires_at, revoked_at) "
        "VALUES ('s1', :h, :at, :later, :revoked)"
    )
    with empty_engine.begin() as conn:
        conn.execute(insert, {"h": "h3", "at": at, "later": later, "revoked": at})
    with pytest.raises(IntegrityError), empty_engine.begin() as conn:
        conn.execute(insert, {"h": "h4", "at": at, "later": later, "revoked": None})
