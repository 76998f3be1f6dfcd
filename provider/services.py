"""The long-lived objects a running service shares, assembled in one place."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from provider.config import Settings
from provider.keycloak import KeycloakGateway
from provider.keyed_hash import KeyedHasher
from provider.storage.engine import make_engine, read_only

_EXTENSION_KEY = "umpass"


@dataclass
class Services:
    settings: Settings
    keycloak: KeycloakGateway
    engine: Engine
    sessions: sessionmaker[Session]  # for writes (and reads that lead to writes)
    reads: sessionmaker[Session]  # for transactions that only read
    hasher: KeyedHasher

    @classmethod
    def assemble(cls, settings: Settings, *, gateway: KeycloakGateway | None = None) -> Services:
        engine = make_engine(settings.database_url)
        return cls(
            settings=settings,
            keycloak=gateway or KeycloakGateway(settings.keycloak),
            engine=engine,
            sessions=sessionmaker(engine, expire_on_commit=False),
            reads=sessionmaker(read_only(engine), expire_on_commit=False),
            hasher=KeyedHasher(settings.hmac_key),
        )


def install(app: Flask, svc: Services) -> None:
    app.extensions[_EXTENSION_KEY] = svc


def services(app: Flask) -> Services:
    return app.extensions[_EXTENSION_KEY]
