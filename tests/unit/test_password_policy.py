from provider.password_policy import PasswordPolicy

REALM = (
    "length(12) and maxLength(128) and notUsername(undefined) and notEmail(undefined) "
    "and passwordBlacklist(umpass-common-passwords.txt) and hashAlgorithm(pbkdf2-sha256)"
)


def test_parse_reads_every_rule() -> None:
    policy = PasswordPolicy.parse(REALM)
    assert policy.min_length == 12
    assert policy.max_length == 128
    assert policy.rules["passwordBlacklist"] == "umpass-common-passwords.txt"
    assert policy.rules["notUsername"] == "undefined"


def test_tips_are_plain_sentences_without_hashing_detail() -> None:
    tips = PasswordPolicy.parse(REALM).tips()
    assert tips == [
        "Use at least 12 characters. A few unrelated words work well.",
        "Do not use your user ID or email address.",
        "Avoid common passwords: they are refused.",
    ]


def test_what_to_avoid_is_one_sentence_and_a_short_maximum_is_said() -> None:
    policy = PasswordPolicy.parse("length(8) and maxLength(20) and notUsername and notEmail")
    assert policy.tips(also_avoid=["date of birth", "activation code"]) == [
        "Use at least 8 characters. A few unrelated words work well.",
        "Use no more than 20 characters.",
        "Do not use your user ID, email address, date of birth, or activation code.",
    ]
    assert PasswordPolicy.parse("length(8)").tips(also_avoid=["date of birth"]) == [
        "Use at least 8 characters. A few unrelated words work well.",
        "Do not use your date of birth.",
    ]


def test_counts_and_empty_policy() -> None:
    policy = PasswordPolicy.parse("digits(2) and upperCase and length")
    assert policy.min_length == 8
    assert "Include at least 2 digits." in policy.tips()
    assert "Include at least 1 capital letter." in policy.tips()
    assert PasswordPolicy.parse(None).tips() == []
    assert PasswordPolicy.parse("").min_length == 0


def test_refusals_become_sentences() -> None:
    policy = PasswordPolicy.parse(REALM)
    assert policy.explain_refusal("invalidPasswordMinLengthMessage") == (
        "Your password is too short: use at least 12 characters."
    )
    assert policy.explain_refusal("somethingNew", "Invalid password: must rhyme.") == "Must rhyme."
    assert policy.explain_refusal("somethingNew", "") == (
        "That password was not accepted. Choose another one."
    )
