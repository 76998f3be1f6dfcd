"""A new activation code, shown once: the POST that issues it redirects to a GET that shows it.

Between the two the code travels in the staff member's session cookie, sealed (Fernet under
a key of its own, derived from the HMAC key): unreadable there, and never in the database
or a log. The GET takes the ticket out of the session and redeems its random nonce in the
table of used nonces before showing anything, so a reload, a second tab or a copy of the
cookie sent again shows the code no more, and issues no other.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy.exc import IntegrityError

from provider.activation_codes import IssuedCode
from provider.keyed_hash import Purpose
from provider.services import Services
from provider.storage.models import UsedChallenge

TICKET = "umpass_new_code"  # the session key
SHOW_WITHIN = timedelta(minutes=10)  # an unshown code's ticket goes stale after this


def _fernet(svc: Services) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(svc.hasher.subkey(Purpose.CODE_DISPLAY)))


def seal(svc: Services, issued: IssuedCode) -> dict[str, str]:
    """The ticket for the session: whose code, a nonce, and the code sealed."""
    nonce = secrets.token_urlsafe(24)
    plain = json.dumps(
        {
            "user_id": issued.user_id,
            "nonce": nonce,
            "code": issued.code,
            "expires_at": issued.expires_at.isoformat(),
        }
    )
    sealed = _fernet(svc).encrypt(plain.encode()).decode()
    return {"user_id": issued.user_id, "sealed": sealed}


def take(svc: Services, ticket: Any, user_id: str) -> IssuedCode | None:
    """The code the ticket holds, the first time it is taken and only for `user_id`."""
    if not isinstance(ticket, dict) or ticket.get("user_id") != user_id:
        return None
    try:
        plain = _fernet(svc).decrypt(
            str(ticket.get("sealed", "")).encode(), ttl=int(SHOW_WITHIN.total_seconds())
        )
    except InvalidToken:
        return None
    held = json.loads(plain)
    if held["user_id"] != user_id or not _redeem(svc, held["nonce"]):
        return None
    return IssuedCode(
        user_id=user_id, code=held["code"], expires_at=datetime.fromisoformat(held["expires_at"])
    )


def _redeem(svc: Services, nonce: str) -> bool:
    """True the first time `nonce` is redeemed, False ever after (until purged with the
    other used nonces, long after its ticket went stale)."""
    key = hashlib.sha256(b"code-display\0" + nonce.encode()).hexdigest()
    try:
        with svc.sessions.begin() as session:
            session.add(UsedChallenge(nonce=key, expires_at=datetime.now(UTC) + SHOW_WITHIN))
    except IntegrityError:
        return False
    return True
