"""The proof-of-work check a hot user ID's identify form needs (see `lockout.hot`).

An ALTCHA challenge (the `altcha` package, protocol v2): PBKDF2 with a counter the
browser has to find, signed with a key of its own derived from UMPASS_HMAC_KEY. The
server picks the counter, so it checks a solution with one HMAC and never re-derives.
A challenge expires after `LIFETIME` and is redeemed once: its signed random nonce is
kept (`UsedChallenge`) until then, so a solved one cannot be replayed.

The widget that solves it is the vendored ALTCHA web component
(provider/static/vendor/altcha/), served from this origin.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta

import altcha
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from provider.keyed_hash import KeyedHasher, Purpose
from provider.storage.models import UsedChallenge

ALGORITHM = "PBKDF2/SHA-256"
COST = 1000  # PBKDF2 iterations per counter tried
LIFETIME = timedelta(minutes=30)  # as long as a flow may sit idle
# A real payload is about 700 characters; anything much longer is not one.
MAX_PAYLOAD = 4096


def issue(hasher: KeyedHasher, max_number: int, now: datetime) -> str:
    """A fresh signed challenge, as the JSON the widget takes.

    The counter lies in the upper half of the range, so no challenge is nearly free.
    """
    low = max_number // 2
    counter = low + secrets.randbelow(max_number - low)
    challenge = altcha.create_challenge(
        ALGORITHM,
        COST,
        counter=counter,
        expires_at=int((now + LIFETIME).timestamp()),
        hmac_secret=hasher.subkey(Purpose.CHALLENGE_SIGNATURE),
        hmac_key_secret=hasher.subkey(Purpose.CHALLENGE_SOLUTION),
    )
    return json.dumps(challenge.to_dict(), separators=(",", ":"))


def redeem(
    sessions: sessionmaker[Session], hasher: KeyedHasher, payload: str | None, now: datetime
) -> bool:
    """True once for a payload that solves a challenge this service issued and that has
    not expired; False for a missing, forged, wrong, expired or replayed one."""
    if not payload or len(payload) > MAX_PAYLOAD:
        return False
    try:
        parsed = altcha.Payload.from_base64(payload)
        params = parsed.challenge.parameters
        # Every challenge issued here carries its expiry and the solution's signature;
        # without the latter the library would re-derive, which costs COST iterations.
        if not isinstance(params.expires_at, int) or not params.key_signature:
            return False
        result = altcha.verify_solution(
            parsed,
            hasher.subkey(Purpose.CHALLENGE_SIGNATURE),
            hmac_key_secret=hasher.subkey(Purpose.CHALLENGE_SOLUTION),
        )
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return False  # not a payload at all
    if not result.verified or not isinstance(params.nonce, str) or len(params.nonce) > 64:
        return False
    expires_at = datetime.fromtimestamp(params.expires_at, now.tzinfo)
    try:
        with sessions.begin() as session:
            session.add(UsedChallenge(nonce=params.nonce, expires_at=expires_at))
    except IntegrityError:
        return False  # redeemed before: a replay
    return True
