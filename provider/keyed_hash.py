"""Keyed hashes (HMAC-SHA256) for everything the service must compare but never keep.

Activation codes, dates of birth and ID/passport digits are stored only as HMACs whose
key lives outside the database (UMPASS_HMAC_KEY). Each use has its own purpose label,
so a hash made for one purpose never matches another, and comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
from enum import StrEnum


class Purpose(StrEnum):
    ACTIVATION_CODE = "activation-code"
    DATE_OF_BIRTH = "date-of-birth"
    ID_LAST4 = "id-last4"
    CONTACT = "contact"
    CONTACT_CODE = "contact-code"
    FLOW_ID = "flow-id"
    # What a recovery start typed (the per-account send budget's key), and a password
    # whose write's answer was lost (held until the retry).
    RECOVERY_ACCOUNT = "recovery-account"
    RECOVERY_PASSWORD = "recovery-password"  # noqa: S105 - a label, not a secret
    POLICY_REVIEW_BROWSER = "policy-review-browser"  # the browser a gate ticket is bound to
    OIDC_CODE = "oidc-code"
    OIDC_TOKEN = "oidc-token"  # noqa: S105 - a label, not a secret
    # Keys, not hashes: the proof-of-work challenge's signature and its solution's.
    CHALLENGE_SIGNATURE = "challenge-signature"
    CHALLENGE_SOLUTION = "challenge-solution"
    # A key, not a hash: seals a new activation code on its way to being shown once.
    CODE_DISPLAY = "code-display"


class KeyedHasher:
    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the HMAC key must be at least 32 bytes")
        self._key = key

    def digest(self, purpose: Purpose, value: str) -> str:
        message = purpose.value.encode() + b"\0" + value.encode("utf-8")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def subkey(self, purpose: Purpose) -> bytes:
        """A key of its own for `purpose`, for a library that signs with a key it is given:
        it never equals the service's key nor any other purpose's."""
        return hmac.new(self._key, b"subkey\0" + purpose.value.encode(), hashlib.sha256).digest()

    def matches(self, purpose: Purpose, value: str, expected: str | None) -> bool:
        """Constant-time check; a missing `expected` still costs one HMAC."""
        actual = self.digest(purpose, value)
        return hmac.compare_digest(actual, expected or "0" * len(actual)) and expected is not None
