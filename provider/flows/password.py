"""Step 4: the first password, judged before it goes to Keycloak.

The realm's policy (read from Keycloak) is shown as tips before typing. On submit the
service refuses what it can explain better than Keycloak: the user ID, the date of birth
in any common spelling, the activation code, and guessable passwords (zxcvbn, with the
student's own details as hints); the reason is shown by the field. Keycloak keeps the
final word. Nothing here logs or stores the password.
"""

from __future__ import annotations

import re
from datetime import datetime

from flask_wtf import FlaskForm
from wtforms import PasswordField
from wtforms.validators import EqualTo, InputRequired, Length
from zxcvbn import zxcvbn

from provider.keyed_hash import KeyedHasher, Purpose
from provider.password_policy import PasswordPolicy

MIN_SCORE = 3  # zxcvbn 0..4; 3 = "safely unguessable"
# zxcvbn's matching grows fast with length; what follows the first 64 characters only
# makes a password stronger, so it is not scored.
_SCORED_PREFIX = 64
_DATE_FORMATS = ("%Y%m%d", "%d%m%Y", "%m%d%Y", "%d%m%y", "%y%m%d")


class PasswordForm(FlaskForm):
    password = PasswordField(
        "New password",
        validators=[InputRequired("Enter a password"), Length(max=1024)],
        render_kw={"autocomplete": "new-password"},
    )
    confirm = PasswordField(
        "Type it again",
        validators=[
            InputRequired("Type your password again"),
            EqualTo("password", "The two passwords are not the same"),
        ],
        render_kw={"autocomplete": "new-password"},
    )


def _dates_in(password: str) -> set[str]:
    """ISO dates that digit runs in the password could spell."""
    found: set[str] = set()
    runs = {re.sub(r"[-/. ]", "", m) for m in re.findall(r"\d[\d\-/. ]{4,9}\d", password)}
    runs |= set(re.findall(r"\d{6,8}", password))
    for run in runs:
        for fmt in _DATE_FORMATS:
            try:
                found.add(datetime.strptime(run, fmt).date().isoformat())
            except ValueError:
                continue
    return found


def weakness(
    password: str,
    *,
    policy: PasswordPolicy,
    user_id: str,
    hints: list[str],
    hasher: KeyedHasher,
    dob_hash: str | None,
    code_hash: str | None,
) -> str | None:
    """Why this password is refused, as a sentence, or None when it may go to Keycloak."""
    if policy.min_length and len(password) < policy.min_length:
        return f"Your password is too short: use at least {policy.min_length} characters."
    if policy.max_length and len(password) > policy.max_length:
        return f"Your password is too long: use at most {policy.max_length} characters."
    lowered = password.lower()
    if user_id and user_id.lower() in lowered:
        return "Your password cannot contain your user ID."
    if dob_hash and any(
        hasher.digest(Purpose.DATE_OF_BIRTH, d) == dob_hash for d in _dates_in(password)
    ):
        return "Your password cannot contain your date of birth."
    compact = re.sub(r"[\s-]+", "", password).upper()
    if code_hash and hasher.digest(Purpose.ACTIVATION_CODE, compact) == code_hash:
        return "Your password cannot be your activation code."
    result = zxcvbn(password[:_SCORED_PREFIX], user_inputs=[h for h in hints if h])
    if result["score"] < MIN_SCORE:
        feedback = result.get("feedback") or {}
        warning = (feedback.get("warning") or "").rstrip(".")
        reason = f"{warning}." if warning else "It would be easy to guess."
        return f"Choose a harder password. {reason} Try a few unrelated words."
    return None


def strength(password: str, hints: list[str]) -> int:
    """zxcvbn's 0..4 score, for the meter."""
    return int(zxcvbn(password[:_SCORED_PREFIX], user_inputs=[h for h in hints if h])["score"])
