"""Where events go, read from the environment of `umpass deliver` (which needs no Keycloak
secret, only the database and these):

    UMPASS_WEBHOOK_ENDPOINTS   JSON list: [{"name": "lms", "url": "https://…", "secret": "whsec_…"}]
    UMPASS_WEBHOOK_MAX_ATTEMPTS  tries before an event is a dead letter (default 8)
    UMPASS_WEBHOOK_TIMEOUT     seconds per request, connect and read each (default 10)
    UMPASS_WEBHOOK_BACKOFF     seconds before the first retry, doubled each time (default 30)
    UMPASS_WEBHOOK_BACKOFF_MAX the longest wait between tries, in seconds (default 3600)

HTTPS only; plain HTTP to a loopback address in development or tests only.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from provider.config import ConfigError, number_setting
from provider.events.signing import InvalidSecret, secret_key

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class Endpoint:
    name: str  # stable: each delivery row is keyed by it
    url: str
    secret: str


@dataclass(frozen=True)
class DeliverySettings:
    database_url: str
    endpoints: tuple[Endpoint, ...]
    max_attempts: int = 8
    timeout: float = 10.0
    backoff: float = 30.0
    backoff_max: float = 3600.0


def load(env: Mapping[str, str]) -> DeliverySettings:
    plain_loopback = env.get("UMPASS_ENV", "").strip().lower() == "development" or (
        env.get("UMPASS_TESTING", "") == "1"
    )
    endpoints = _endpoints(env.get("UMPASS_WEBHOOK_ENDPOINTS", "").strip(), plain_loopback)
    return DeliverySettings(
        database_url=env.get("DATABASE_URL", "").strip() or "sqlite:///var/umpass.db",
        endpoints=endpoints,
        max_attempts=int(number_setting(env, "UMPASS_WEBHOOK_MAX_ATTEMPTS", 8, minimum=1)),
        timeout=number_setting(env, "UMPASS_WEBHOOK_TIMEOUT", 10, minimum=0.1),
        backoff=number_setting(env, "UMPASS_WEBHOOK_BACKOFF", 30, minimum=0),
        backoff_max=number_setting(env, "UMPASS_WEBHOOK_BACKOFF_MAX", 3600, minimum=0),
    )


def _endpoints(raw: str, plain_loopback: bool) -> tuple[Endpoint, ...]:
    if not raw:
        return ()
    try:
        items = json.loads(raw)
    except ValueError:
        raise ConfigError("UMPASS_WEBHOOK_ENDPOINTS must be a JSON list") from None
    if not isinstance(items, list):
        raise ConfigError("UMPASS_WEBHOOK_ENDPOINTS must be a JSON list")
    found: list[Endpoint] = []
    for item in items:
        if not isinstance(item, dict) or not all(
            isinstance(item.get(k), str) for k in ("name", "url", "secret")
        ):
            raise ConfigError("each webhook endpoint needs a name, a url and a secret")
        name, url, secret = item["name"], item["url"], item["secret"]
        if not _NAME.match(name) or name in {e.name for e in found}:
            raise ConfigError(f"webhook endpoint name {name!r}: a-z, 0-9, - or _, unique")
        _check_url(name, url, plain_loopback)
        try:
            secret_key(secret)
        except InvalidSecret as exc:
            raise ConfigError(f"webhook endpoint {name}: {exc}") from None
        found.append(Endpoint(name, url, secret))
    return tuple(found)


def _check_url(name: str, url: str, plain_loopback: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and plain_loopback and _loopback(parts.hostname or ""):
        return
    raise ConfigError(
        f"webhook endpoint {name}: the URL must be https:// "
        "(http:// only to a loopback address in development)"
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
