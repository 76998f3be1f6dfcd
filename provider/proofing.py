"""What a student types to prove who they are, normalised before any comparison.

The rules come from the Registry's FAQ: the user ID is the first characters of the
student number (case and spaces ignored); the ID/passport check uses its last 4
characters (letters case-insensitive; spaces, '/', '(' and ')' ignored, so
``1234567(8)`` ends in ``5678``).
"""

from __future__ import annotations

import re
import secrets
from datetime import date

DEFAULT_USER_ID_LENGTH = 7
_ID_NOISE = re.compile(r"[\s/()]+")
_ALNUM = re.compile(r"^[A-Za-z0-9]+$")

# Activation codes: no 0/O, 1/I/L, U/V look-alikes; 15 characters of a 29-letter
# alphabet carry 72.9 bits, shown as three groups of five.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTWXYZ23456789"
CODE_LENGTH = 15
CODE_GROUP = 5


def normalize_user_id(raw: str, length: int = DEFAULT_USER_ID_LENGTH) -> str | None:
    """The canonical user ID, or None when the input cannot be one.

    A full student number is accepted too: its first `length` characters are the ID.
    """
    compact = "".join(raw.split()).lower()
    if len(compact) < length or len(compact) > 32 or not _ALNUM.match(compact):
        return None
    return compact[:length]


def normalize_id_last4(raw: str) -> str | None:
    """The last 4 characters of an ID/passport number, upper-cased, or None."""
    compact = _ID_NOISE.sub("", raw).upper()
    if len(compact) < 4 or len(compact) > 64 or not _ALNUM.match(compact):
        return None
    return compact[-4:]


def normalize_date_of_birth(value: date) -> str:
    return value.isoformat()


def new_activation_code() -> str:
    """A fresh code, grouped for reading: ``ABCDE-FGHJK-MNPQR``."""
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    return "-".join(raw[i : i + CODE_GROUP] for i in range(0, CODE_LENGTH, CODE_GROUP))


def normalize_activation_code(raw: str) -> str | None:
    """The code as stored (no separators, upper case), or None if it cannot be one."""
    compact = re.sub(r"[\s-]+", "", raw).upper()
    if len(compact) != CODE_LENGTH or any(c not in CODE_ALPHABET for c in compact):
        return None
    return compact
