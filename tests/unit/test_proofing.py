import math
import re

import pytest

from provider.keyed_hash import KeyedHasher, Purpose
from provider.proofing import (
    CODE_ALPHABET,
    CODE_LENGTH,
    new_activation_code,
    normalize_activation_code,
    normalize_id_last4,
    normalize_user_id,
)


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("dc12345", "dc12345"),
        ("  DC12345 ", "dc12345"),
        ("DC 12345", "dc12345"),
        ("dc123456789", "dc12345"),  # the whole student number: its first 7 characters
        ("dc1234", None),
        ("dc12-345", None),
        ("", None),
        ("x" * 40, None),
        ("dc" + "1" * 30, "dc11111"),  # 32 characters: the longest accepted
        ("dc" + "1" * 31, None),
    ],
)
def test_user_id(typed: str, expected: str | None) -> None:
    assert normalize_user_id(typed) == expected


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("1234567(8)", "5678"),
        ("1234567 (8)", "5678"),
        ("M765432(1)", "4321"),
        ("p4455667", "5667"),
        ("AB/12 34cd", "34CD"),
        ("12a", None),
        ("12-34", None),
        ("5678", "5678"),  # exactly 4
        ("A12345678", "5678"),  # the last 4 of 9
        ("1" * 60 + "5678", "5678"),  # 64 characters: the longest accepted
        ("1" * 61 + "5678", None),
    ],
)
def test_id_last4(typed: str, expected: str | None) -> None:
    assert normalize_id_last4(typed) == expected


def test_codes_are_grouped_unambiguous_and_strong() -> None:
    codes = {new_activation_code() for _ in range(2000)}
    assert len(codes) == 2000
    for code in list(codes)[:50]:
        assert re.fullmatch(r"[A-Z2-9]{5}-[A-Z2-9]{5}-[A-Z2-9]{5}", code)
        assert not set(code) & set("01OILUV")
    assert CODE_LENGTH * math.log2(len(CODE_ALPHABET)) >= 60


def test_code_normalisation_forgives_case_spaces_and_dashes() -> None:
    code = new_activation_code()
    assert normalize_activation_code(code.lower().replace("-", " ")) == code.replace("-", "")
    assert normalize_activation_code(code[:-1]) is None
    assert normalize_activation_code("0" * 15) is None


def test_keyed_hash_separates_purposes_and_keys() -> None:
    a = KeyedHasher(b"a" * 32)
    b = KeyedHasher(b"b" * 32)
    assert a.digest(Purpose.DATE_OF_BIRTH, "2007-03-14") != a.digest(Purpose.ID_LAST4, "2007-03-14")
    assert a.digest(Purpose.ID_LAST4, "5678") != b.digest(Purpose.ID_LAST4, "5678")
    stored = a.digest(Purpose.ID_LAST4, "5678")
    assert a.matches(Purpose.ID_LAST4, "5678", stored)
    assert not a.matches(Purpose.ID_LAST4, "5679", stored)
    assert not a.matches(Purpose.ID_LAST4, "5678", None)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        KeyedHasher(b"short")
