"""The realm's password policy, as Keycloak states it, turned into plain sentences.

Keycloak keeps the policy as one string such as
``length(12) and maxLength(128) and notUsername(undefined)``; it refuses a password
with an error key such as ``invalidPasswordMinLengthMessage``. This module reads the
first into tips shown before typing and turns the second into a sentence a student
understands. Keycloak stays the judge: nothing here accepts a password.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from babel.lists import format_list
from flask_babel import get_locale, ngettext
from flask_babel import gettext as _

# A maximum this long is no limit anyone meets: not worth a line to read (Keycloak still
# refuses a longer one, and the refusal says the limit).
MAX_LENGTH_WORTH_SAYING = 64

_RULE = re.compile(r"\s*([A-Za-z][A-Za-z0-9-]*)\s*(?:\(([^)]*)\))?\s*")


@dataclass(frozen=True)
class PasswordPolicy:
    raw: str = ""
    rules: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str | None) -> PasswordPolicy:
        rules: dict[str, str] = {}
        for part in re.split(r"\s+and\s+", (raw or "").strip()):
            match = _RULE.fullmatch(part)
            if match:
                rules[match.group(1)] = (match.group(2) or "").strip()
        return cls(raw=raw or "", rules=rules)

    def _int(self, name: str, default: int) -> int:
        value = self.rules.get(name, "")
        return int(value) if value.isdigit() else default

    @property
    def min_length(self) -> int:
        # Keycloak's own default for length() without an argument is 8.
        return self._int("length", 8) if "length" in self.rules else 0

    @property
    def max_length(self) -> int | None:
        return self._int("maxLength", 64) if "maxLength" in self.rules else None

    def tips(self, also_avoid: Sequence[str] = ()) -> list[str]:
        """Plain sentences, one per rule, in the order a person would check them.

        `also_avoid`: what else the caller refuses ("date of birth"), said in the same
        one sentence as the user ID and email the realm refuses."""
        tips: list[str] = []
        if self.min_length:
            tips.append(
                _(
                    "Use at least %(n)d characters. A few unrelated words work well.",
                    n=self.min_length,
                )
            )
        if self.max_length and self.max_length < MAX_LENGTH_WORTH_SAYING:
            tips.append(_("Use no more than %(n)d characters.", n=self.max_length))
        counts = {
            "digits": lambda n: ngettext(
                "Include at least %(num)d digit.", "Include at least %(num)d digits.", n
            ),
            "lowerCase": lambda n: ngettext(
                "Include at least %(num)d lower-case letter.",
                "Include at least %(num)d lower-case letters.",
                n,
            ),
            "upperCase": lambda n: ngettext(
                "Include at least %(num)d capital letter.",
                "Include at least %(num)d capital letters.",
                n,
            ),
            "specialChars": lambda n: ngettext(
                "Include at least %(num)d symbol such as ! or #.",
                "Include at least %(num)d symbols such as ! or #.",
                n,
            ),
        }
        for rule, sentence in counts.items():
            if rule in self.rules:
                tips.append(sentence(self._int(rule, 1)))
        avoid: list[str] = []
        if "notUsername" in self.rules or "notContainsUsername" in self.rules:
            avoid.append(_("user ID"))
        if "notEmail" in self.rules:
            avoid.append(_("email address"))
        avoid.extend(str(thing) for thing in also_avoid)
        if avoid:
            things = format_list(avoid, style="or", locale=str(get_locale() or "en"))
            tips.append(_("Do not use your %(things)s.", things=things))
        if "passwordBlacklist" in self.rules:
            tips.append(_("Avoid common passwords: they are refused."))
        if "passwordHistory" in self.rules:
            tips.append(_("Do not reuse a recent password."))
        return tips

    def explain_refusal(self, error_key: str, description: str = "") -> str:
        """Turn Keycloak's refusal into one plain sentence."""
        # Keycloak keys look like invalidPassword<Rule>Message.
        fixed = {
            "MinLength": lambda: _(
                "Your password is too short: use at least %(n)d characters.",
                n=self.min_length or 8,
            ),
            "MaxLength": lambda: _(
                "Your password is too long: use at most %(n)d characters.",
                n=self.max_length or 64,
            ),
            "NotUsername": lambda: _("Your password cannot be your user ID."),
            "NotContainsUsername": lambda: _("Your password cannot contain your user ID."),
            "NotEmail": lambda: _("Your password cannot be your email address."),
            "Blacklisted": lambda: _(
                "That password is too common and easy to guess. Choose another one."
            ),
            "Generic": lambda: _("That password is too common and easy to guess."),
            "History": lambda: _("You used that password recently. Choose a new one."),
            "MinDigits": lambda: _("Your password needs more digits."),
            "MinLowerCaseChars": lambda: _("Your password needs more lower-case letters."),
            "MinUpperCaseChars": lambda: _("Your password needs more capital letters."),
            "MinSpecialChars": lambda: _("Your password needs more symbols."),
            "RegexPattern": lambda: _("Your password does not follow the required pattern."),
        }
        rule = error_key.removeprefix("invalidPassword").removesuffix("Message")
        if rule in fixed:
            return fixed[rule]()
        text = re.sub(r"^\s*invalid password:\s*", "", description or "", flags=re.IGNORECASE)
        text = text.strip()
        if not text:
            return _("That password was not accepted. Choose another one.")
        return text[0].upper() + text[1:]
