"""Per-client-address request limits (Flask-Limiter), every one a setting.

The client address is the socket's peer unless UMPASS_TRUSTED_PROXIES says how many
proxies in front of the service append to X-Forwarded-For (werkzeug's ProxyFix takes the
entry that many hops from the right, so whatever a client wrote itself is ignored).

The counts live in UMPASS_RATELIMIT_STORAGE: Redis in production, so that a limit is one
budget across replicas. When Redis does not answer, limited requests fail closed with the
calm 503 page (`STORAGE_ERROR`), never silently unlimited.
"""

from __future__ import annotations

import ipaddress
import math
import time

from flask import Flask, current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from redis.exceptions import RedisError

from provider.config import Settings


def client_network() -> str:
    """Whose budget a request spends: the client's IPv4 address, or its IPv6 /64. One
    IPv6 subscriber usually holds a whole /64, so counting single addresses would give
    them 2^64 budgets."""
    address = get_remote_address()
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{parsed}/64", strict=False))
    return address


limiter = Limiter(key_func=client_network, default_limits=[])

# What a limited request raises when the shared store is down (Flask-Limiter re-raises it).
STORAGE_ERROR = RedisError
# A request must not hang on a dead Redis: fail within a couple of seconds.
REDIS_TIMEOUT_SECONDS = 2.0


def install(app: Flask, settings: Settings) -> None:
    app.config.update(
        RATELIMIT_STORAGE_URI=settings.ratelimit_storage,
        # Its X-RateLimit/Retry-After headers on every response would contradict our own.
        RATELIMIT_HEADERS_ENABLED=False,
        RATELIMIT_SWALLOW_ERRORS=False,  # fail closed
        RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=False,  # a per-replica budget is no budget
        UMPASS_IDENTIFY_LIMIT=settings.identify_limit,
        UMPASS_SEND_LIMIT=settings.send_limit,
        UMPASS_SIGN_IN_LIMIT=settings.sign_in_limit,
        UMPASS_STRENGTH_LIMIT=settings.strength_limit,
        UMPASS_RECOVERY_ACCOUNT_LIMIT=settings.recovery_account_limit,
        UMPASS_RECOVERY_CONTACT_LIMIT=settings.recovery_contact_limit,
    )
    if settings.ratelimit_storage.startswith("redis"):
        app.config["RATELIMIT_STORAGE_OPTIONS"] = {
            "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
            "socket_timeout": REDIS_TIMEOUT_SECONDS,
        }
    limiter.init_app(app)


def store_answers(uri: str) -> bool:
    """Whether the limit store at `uri` answers now (start-up checks, before any app)."""
    from limits.storage import storage_from_string

    try:
        return bool(
            storage_from_string(
                uri,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
            ).check()
        )
    except Exception:  # any failure to connect means the same thing here
        return False


def check_storage() -> None:
    """Raise STORAGE_ERROR unless the limit store answers."""
    storage = limiter.storage
    if not storage.check():
        raise RedisError("the rate-limit store did not answer")


def identify_limit() -> str:
    return current_app.config["UMPASS_IDENTIFY_LIMIT"]


def sign_in_limit() -> str:
    """First sign-ins arriving from Keycloak: a lab behind one NAT starts many at once."""
    return current_app.config["UMPASS_SIGN_IN_LIMIT"]


def strength_limit() -> str:
    return current_app.config["UMPASS_STRENGTH_LIMIT"]


def send_limit() -> str:
    return current_app.config["UMPASS_SEND_LIMIT"]


def recovery_account_limit() -> str:
    return current_app.config["UMPASS_RECOVERY_ACCOUNT_LIMIT"]


def recovery_contact_limit() -> str:
    return current_app.config["UMPASS_RECOVERY_CONTACT_LIMIT"]


def spend(limit_value: str, *key: str) -> int | None:
    """Spend one request of `key` against each window of `limit_value` (e.g. "1 per
    minute;4 per hour"), inside a view, where the key is known only after the form is
    read. Returns None when every window had room, else the seconds until the fullest
    one frees up (for Retry-After)."""
    from limits import parse_many

    strategy = limiter.limiter
    for item in parse_many(limit_value):
        if not strategy.hit(item, *key):
            reset = strategy.get_window_stats(item, *key).reset_time
            return max(1, math.ceil(reset - time.time()))
    return None
