"""Checking the phone numbers and email addresses students type, and masking them for display.

Email: email-validator's syntax rules (no DNS lookups on the request path), and nothing
that could end up as an extra mail header. Phone: parsed with phonenumbers (default
region Macau), a mobile number (SMS must reach it), from an allowed country, stored in
E.164. Each refusal is a sentence the student can act on.
"""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from flask_babel import gettext as _
from phonenumbers import PhoneNumberType

DEFAULT_REGION = "MO"
DEFAULT_COUNTRY_CODES = (853, 852, 86, 886, 351)
_MOBILE_TYPES = {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}


class ContactRejected(ValueError):
    """The value cannot be used; `str(exc)` says why in plain words."""


@dataclass(frozen=True)
class PhonePolicy:
    region: str = DEFAULT_REGION
    country_codes: tuple[int, ...] = DEFAULT_COUNTRY_CODES


def clean_email(raw: str) -> str:
    """The normalised address, or `ContactRejected`."""
    if any(c in raw for c in "\r\n\0"):
        raise ContactRejected(_("An email address is one line: remove the line break."))
    value = raw.strip()
    if not value:
        raise ContactRejected(_("Enter an email address."))
    if len(value) > 254:
        raise ContactRejected(_("That email address is too long."))
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        raise ContactRejected(
            _("Enter an email address in the right format, like name@example.com.")
        ) from None
    if any(c in result.normalized for c in ",;<>\"'()[]\\"):
        raise ContactRejected(_("Enter one plain email address, like name@example.com."))
    return result.normalized


def clean_phone(raw: str, policy: PhonePolicy | None = None) -> str:
    """The number in E.164, or `ContactRejected`."""
    policy = policy or PhonePolicy()
    value = raw.strip()
    if not value:
        raise ContactRejected(_("Enter a mobile phone number."))
    if len(value) > 32 or any(c in value for c in "\r\n\0"):
        raise ContactRejected(_("Enter a mobile phone number, like +853 6234 5678."))
    try:
        number = phonenumbers.parse(value, policy.region)
    except phonenumbers.NumberParseException:
        raise ContactRejected(_("Enter a mobile phone number, like +853 6234 5678.")) from None
    if not phonenumbers.is_valid_number(number):
        raise ContactRejected(_("That is not a valid phone number. Check the digits."))
    if number.country_code not in policy.country_codes:
        allowed = ", ".join(f"+{c}" for c in policy.country_codes)
        raise ContactRejected(
            _("Use a mobile number from one of these places: %(allowed)s.", allowed=allowed)
        )
    if phonenumbers.number_type(number) not in _MOBILE_TYPES:
        raise ContactRejected(_("Use a mobile number: we send the code by text message."))
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def mask_email(email: str | None) -> str | None:
    """``s•••@gmail.com``: the first character and the domain (shown before and after a
    contact is proven, to the student and to the help desk)."""
    if not email or "@" not in email:
        return None
    local, domain = email.rsplit("@", 1)
    return f"{local[:1]}•••@{domain}"


def mask_phone(e164: str | None) -> str | None:
    """``+853 ••••5678``: the country code and the last 4 digits."""
    if not e164 or not e164.startswith("+") or len(e164) < 8:
        return None
    try:
        country = str(phonenumbers.parse(e164).country_code)
    except phonenumbers.NumberParseException:
        return None
    return f"+{country} ••••{e164[-4:]}"
