"""The Standard Webhooks signature (https://www.standardwebhooks.com/): HMAC-SHA256 over
``id.timestamp.body`` with the endpoint's secret (``whsec_`` + base64), sent as
``webhook-signature: v1,<base64>``. Receivers check it and refuse old timestamps."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

PREFIX = "whsec_"
TOLERANCE_SECONDS = 5 * 60  # a replay older (or newer) than this is refused


class InvalidSecret(ValueError):
    """Not a ``whsec_<base64>`` secret."""


class BadSignature(Exception):
    """No valid signature for this body, or a timestamp outside the tolerance."""


def secret_key(secret: str) -> bytes:
    if not secret.startswith(PREFIX):
        raise InvalidSecret("a webhook secret starts with whsec_")
    try:
        key = base64.b64decode(secret.removeprefix(PREFIX), validate=True)
    except ValueError as exc:
        raise InvalidSecret("a webhook secret is whsec_ then base64") from exc
    if len(key) < 24:
        raise InvalidSecret("a webhook secret holds at least 24 random bytes")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header's value."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
        "content-type": "application/json",
    }


def verify(
    secret: str,
    msg_id: str,
    timestamp: str,
    signature_header: str,
    body: bytes,
    now: float | None = None,
) -> None:
    """Raise `BadSignature` unless one of the header's space-separated ``v1,`` signatures
    matches and the timestamp is within `TOLERANCE_SECONDS` of now."""
    now = time.time() if now is None else now
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise BadSignature("timestamp is not a number") from None
    if abs(now - sent_at) > TOLERANCE_SECONDS:
        raise BadSignature("timestamp outside the tolerance")
    expected = sign(secret, msg_id, sent_at, body).encode()
    for candidate in signature_header.split():
        if hmac.compare_digest(candidate.encode(), expected):
            return
    raise BadSignature("no matching signature")
