import pytest

from provider.contact_input import (
    ContactRejected,
    PhonePolicy,
    clean_email,
    clean_phone,
    mask_email,
    mask_phone,
)


@pytest.mark.parametrize(
    ("typed", "expected"),
    [("Ana@Example.edu", "Ana@example.edu"), ("  s.lei@gmail.com ", "s.lei@gmail.com")],
)
def test_good_emails(typed: str, expected: str) -> None:
    assert clean_email(typed) == expected


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("a@b.com\r\nBcc: victim@example.com", "one line"),
        ("a@b.com\nX-Injected: 1", "one line"),
        ("", "Enter an email address"),
        ("not an email", "right format"),
        ("a@b.com, c@d.com", "right format"),
        ("x" * 250 + "@b.com", "too long"),
    ],
)
def test_bad_emails_say_why(typed: str, reason: str) -> None:
    with pytest.raises(ContactRejected, match=reason):
        clean_email(typed)


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("6234 5678", "+85362345678"),
        ("+853 6234-5678", "+85362345678"),
        ("+852 9123 4567", "+85291234567"),
        ("+351 912 345 678", "+351912345678"),
    ],
)
def test_good_mobiles_become_e164(typed: str, expected: str) -> None:
    assert clean_phone(typed) == expected


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("2812 3456", "not a valid phone number"),  # Macau landline range is not valid mobile
        ("+44 7911 123456", "one of these places"),
        ("+853 2838 1234", "mobile|valid"),
        ("call me", "Enter a mobile phone number"),
        ("", "Enter a mobile phone number"),
    ],
)
def test_bad_phones_say_why(typed: str, reason: str) -> None:
    with pytest.raises(ContactRejected, match=reason):
        clean_phone(typed)


def test_country_allowlist_is_configurable() -> None:
    assert clean_phone("+44 7911 123456", PhonePolicy(country_codes=(44,))) == "+447911123456"


def test_masks() -> None:
    assert mask_email("student@gmail.com") == "s•••@gmail.com"
    assert mask_email("nope") is None
    assert mask_phone("+85362345678") == "+853 ••••5678"
    assert mask_phone("+447700900123") == "+44 ••••0123"
    assert mask_phone(None) is None
