import pytest

from provider.flows.steps.password_rules import weakness
from provider.keyed_hash import KeyedHasher, Purpose
from provider.password_policy import PasswordPolicy

HASHER = KeyedHasher(b"k" * 32)
POLICY = PasswordPolicy.parse("length(12) and maxLength(128)")
DOB = HASHER.digest(Purpose.DATE_OF_BIRTH, "2007-03-14")
CODE = HASHER.digest(Purpose.ACTIVATION_CODE, "ABCDEFGHJKMNPQR")


def _why(password: str) -> str | None:
    return weakness(
        password,
        policy=POLICY,
        user_id="dc12345",
        hints=["dc12345", "Ana", "Lei"],
        hasher=HASHER,
        dob_hash=DOB,
        code_hash=CODE,
    )


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short one", "too short"),
        ("x" * 129, "too long"),
        ("my DC12345 account!!", "cannot contain your user ID"),
        ("cat born 14032007", "date of birth"),
        ("cat born 2007-03-14", "date of birth"),
        ("cat born 14/03/2007", "date of birth"),
        ("cat born 070314 ok", "date of birth"),
        ("cat born 03/14/07 ok", "date of birth"),
        ("horse0020070314x", "date of birth"),
        ("cat born 14mar2007", "date of birth"),
        ("march 14, 2007 cat", "date of birth"),
        ("cat 14 March 07 dog", "date of birth"),
        ("abcde-fghjk-mnpqr", "activation code"),
        ("passwordpassword", "Choose a harder password"),
        ("analeianalei1", "Choose a harder password"),
        ("qwertyuiop123", "Choose a harder password"),
    ],
)
def test_refusals_have_reasons(password: str, reason: str) -> None:
    why = _why(password)
    assert why is not None and reason in why


def test_a_good_passphrase_passes_and_is_not_truncated() -> None:
    assert _why("orbit lantern velvet 1987") is None
    assert _why("orbit lantern velvet 1987 " + "z" * 90) is None  # long is fine
