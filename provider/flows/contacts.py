"""Step 3: the phone and email on record, masked.

For now the student confirms what the Registry gave us; changing them and proving each
with a one-time code arrives with the contacts issue.
"""

from __future__ import annotations


def mask_email(email: str | None) -> str | None:
    """``s•••@gmail.com``: the first character and the domain."""
    if not email or "@" not in email:
        return None
    local, domain = email.rsplit("@", 1)
    return f"{local[:1]}•••@{domain}"


def mask_phone(e164: str | None) -> str | None:
    """``+853 ••••5678``: the country code and the last 4 digits."""
    if not e164 or not e164.startswith("+") or len(e164) < 8:
        return None
    import phonenumbers

    try:
        country = str(phonenumbers.parse(e164).country_code)
    except phonenumbers.NumberParseException:
        return None
    return f"+{country} ••••{e164[-4:]}"
