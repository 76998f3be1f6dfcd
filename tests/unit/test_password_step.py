import pytest

from provider.flows.steps.password_rules import weakness
from provider.keyed_hash import KeyedHasher, Purpose
from provider.password_policy import PasswordPolicy
from provider.policies import current_policies

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


def test_policies_render_without_raw_html(tmp_path, monkeypatch) -> None:
    from provider import policies as module

    (tmp_path / "x.md").write_text(
        "---\nid: x\nversion: 1\ntitle: X\n---\n<script>alert(1)</script>\n\n"
        "[click](javascript:alert(1))\n"
    )
    monkeypatch.setattr(module, "POLICY_DIR", tmp_path)
    module.current_policies.cache_clear()
    try:
        (policy,) = module.current_policies()
        assert "<script>" not in policy.html
        assert 'href="javascript' not in policy.html
        assert policy.field_name == "accept_x"
    finally:
        monkeypatch.undo()
        module.current_policies.cache_clear()
    assert {p.id for p in current_policies()} == {"it-acceptable-use", "privacy-notice"}
