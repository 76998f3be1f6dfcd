"""The long-lived objects a running service shares, assembled in one place."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask
from sqlalchemy import Engine

from provider.config import Settings
from provider.keycloak import KeycloakGateway

_EXTENSION_KEY = "umpass"


@dataclass
class Services:
    settings: Settings
    keycloak: KeycloakGateway
    engine: Engine


def install(app: Flask, svc: Services) -> None:
    app.extensions[_EXTENSION_KEY] = svc


def services(app: Flask) -> Services:
    return app.extensions[_EXTENSION_KEY]
