"""RFC 6238 time-based one-time passwords (RFC 4226 HOTP over a 30-second clock), to answer
Keycloak's OTP form the way an authenticator app would.

Keycloak keeps the TOTP secret as a raw string and hashes its UTF-8 bytes; authenticator
apps get the same bytes base32-encoded in the QR code. Both forms are accepted here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import time

_DIGESTS = {"HmacSHA1": hashlib.sha1, "HmacSHA256": hashlib.sha256, "HmacSHA512": hashlib.sha512}


def hotp(key: bytes, counter: int, *, digits: int = 6, algorithm: str = "HmacSHA1") -> str:
    """RFC 4226: the HMAC of the big-endian counter, dynamically truncated."""
    mac = hmac.new(key, struct.pack(">Q", counter), _DIGESTS[algorithm]).digest()
    offset = mac[-1] & 0x0F
    (value,) = struct.unpack(">I", mac[offset : offset + 4])
    return str((value & 0x7FFFFFFF) % 10**digits).zfill(digits)


def totp(
    secret: str | bytes,
    *,
    at: float | None = None,
    period: int = 30,
    digits: int = 6,
    algorithm: str = "HmacSHA1",
) -> str:
    """The code for `secret` (Keycloak's raw secret string, or its bytes) at time `at`."""
    key = secret.encode() if isinstance(secret, str) else secret
    moment = time.time() if at is None else at
    return hotp(key, int(moment // period), digits=digits, algorithm=algorithm)


def totp_from_base32(
    encoded: str,
    *,
    at: float | None = None,
    period: int = 30,
    digits: int = 6,
    algorithm: str = "HmacSHA1",
) -> str:
    """The code for a secret as an authenticator app holds it (base32, padding optional)."""
    cleaned = encoded.replace(" ", "").upper()
    key = base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    return totp(key, at=at, period=period, digits=digits, algorithm=algorithm)
