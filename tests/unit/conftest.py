from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from provider.config import Settings, load_settings
from provider.keyed_hash import KeyedHasher
from provider.storage import migrate
from provider.storage.engine import make_engine


@pytest.fixture
def sessions(tmp_path) -> sessionmaker[Session]:
    engine = make_engine(f"sqlite:///{tmp_path}/unit.db")
    migrate.upgrade(engine)
    return sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
def hasher() -> KeyedHasher:
    return KeyedHasher(b"unit-test-key-" + b"x" * 32)


@pytest.fixture
def offline_settings(tmp_path) -> Settings:
    """Settings for an app with no Keycloak behind it (its calls fail as unreachable)."""
    return load_settings(
        {
            "UMPASS_KC_CLIENT_SECRET": "x",
            "UMPASS_TESTING": "1",
            "DATABASE_URL": f"sqlite:///{tmp_path}/t.db",
        }
    )
