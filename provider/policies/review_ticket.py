"""The ticket Keycloak's policy gate hands a student's browser: who signed in, checked.

keycloak_addon's `umpass-policy-gate` stops an active student whose account lacks a current
policy version and sends the browser here with a JWT it signed with the realm's own key.
Only that signature says who the student is: the browser, the query string and
`login_hint` prove nothing. A ticket is believed when it is signed by a key the realm
publishes (asymmetric algorithms only: an HMAC "signature" could be made with a public key
passed off as a secret), issued by the realm as browsers reach it, typed and addressed to
the gate, not expired, and names a callback inside that realm's sign-in pages (the only
place the review page ever sends the browser back to).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

TICKET_TYPE = "umpass-policy-gate"  # PolicyGateAuthenticator.TICKET_TYPE
# The JWS header's typ (PolicyGateAuthenticator.HEADER_TYPE): a ticket is never taken for
# an access token anywhere (RFC 8725, 3.11), nor an access token for a ticket here.
HEADER_TYPE = "umpass-policy-gate+jwt"
# What Keycloak signs access tokens with; never HS*, never "none".
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]
LEEWAY_SECONDS = 30  # clocks of the Keycloak nodes and ours
MAX_LENGTH = 8192  # a ticket is ~1.5 kB; more is not one
_KEYS_REFRESH_SECONDS = 60  # an unknown key id refetches the set at most this often
_KEYS_MAX_AGE_SECONDS = 3600  # and a key the realm removed is dropped within the hour


class InvalidTicket(Exception):
    """Not a ticket of this realm's gate, or no longer valid. Never says which check failed
    to the browser (the page shows one plain sentence)."""


@dataclass(frozen=True)
class ReviewTicket:
    id: str  # jti: one answer per ticket
    account_id: str  # the Keycloak user id (sub)
    due: tuple[str, ...]  # "id@version" the gate found missing
    callback: str  # resumes this sign-in at Keycloak
    locale: str  # Keycloak's language for this student ("zh-TW", "pt", "en", ...)
    expires_at: datetime


class RealmKeys:
    """The realm's published signing keys (its JWKS), read from Keycloak over the back
    channel and kept; read again when a ticket names a key not seen yet (a key rotation),
    at most once a minute so that garbage key ids cannot make us hammer Keycloak, and
    every hour (a key the realm removed stops being trusted)."""

    def __init__(self, jwks_url: str, timeout: float) -> None:
        self._url = jwks_url
        self._timeout = timeout
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._read_at = 0.0

    def get(self, kid: str | None) -> KeySet:
        with self._lock:
            age = time.monotonic() - self._read_at
            unknown = age > _KEYS_REFRESH_SECONDS and not self._has(kid)
            if self._keys is None or unknown or age > _KEYS_MAX_AGE_SECONDS:
                response = requests.get(self._url, timeout=self._timeout)
                response.raise_for_status()
                self._keys = KeySet.import_key_set(response.json())
                self._read_at = time.monotonic()
            return self._keys

    def _has(self, kid: str | None) -> bool:
        return self._keys is not None and any(k.kid == kid for k in self._keys.keys)


def verify(raw: str, *, keys: RealmKeys, realm_url: str) -> ReviewTicket:
    """The ticket `raw` if every check holds; `InvalidTicket` otherwise.

    `requests` errors reading the keys propagate: Keycloak being down is not a bad ticket."""
    if not raw or len(raw) > MAX_LENGTH or raw.count(".") != 2:
        raise InvalidTicket
    try:
        header = jws.extract_compact(raw.encode("ascii")).headers()
        if header.get("typ") != HEADER_TYPE:
            raise InvalidTicket
        token = jwt.decode(raw, keys.get(header.get("kid")), algorithms=ALGORITHMS)
        claims: dict[str, Any] = token.claims
        jwt.JWTClaimsRegistry(
            leeway=LEEWAY_SECONDS,
            iss={"essential": True, "value": realm_url},
            aud={"essential": True, "value": TICKET_TYPE},
            typ={"essential": True, "value": TICKET_TYPE},
            sub={"essential": True},
            jti={"essential": True},
            exp={"essential": True},
        ).validate(claims)
    except (JoseError, ValueError, KeyError, TypeError, UnicodeError):
        raise InvalidTicket from None
    callback = claims.get("callback")
    due = claims.get("due")
    if (
        not isinstance(callback, str)
        or not callback.startswith(realm_url + "/login-actions/")
        or not isinstance(due, list)
        or not all(isinstance(key, str) for key in due)
    ):
        raise InvalidTicket
    return ReviewTicket(
        id=str(claims["jti"])[:64],
        account_id=str(claims["sub"]),
        due=tuple(due),
        callback=callback,
        locale=str(claims.get("locale") or "")[:16],
        expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
    )
