"""The realm's password policy, as Keycloak states it, turned into plain sentences.

Keycloak keeps the policy as one string such as
``length(12) and maxLength(128) and notUsername(undefined)``; it refuses a password
with an error key such as ``invalidPasswordMinLengthMessage``. This module reads the
first into tips shown before typing and turns the second into a sentence a student
understands. Keycloak stays the judge: nothing here accepts a password.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

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

    def tips(self) -> list[str]:
        """Plain sentences, one per rule, in the order a person would check them."""
        tips: list[str] = []
        if self.min_length:
            tips.append(
                f"Use at least {self.min_length} characters. A few unrelated words work well."
            )
        if self.max_length:
            tips.append(f"Use no more than {self.max_length} characters.")
        counts = {
            "digits": "digit",
            "lowerCase": "lower-case letter",
            "upperCase": "capital letter",
            "specialChars": "symbol such as ! or #",
        }
        for rule, noun in counts.items():
            if rule in self.rules:
                n = self._int(rule, 1)
                tips.append(f"Include at least {n} {noun}{'' if n == 1 else 's'}.")
        if "notUsername" in self.rules or "notContainsUsername" in self.rules:
            tips.append("Do not use your user ID.")
        if "notEmail" in self.rules:
            tips.append("Do not use your email address.")
        if "passwordBlacklist" in self.rules:
            tips.append("Avoid common passwords: they are refused.")
        if "passwordHistory" in self.rules:
            tips.append("Do not reuse a recent password.")
        return tips

    def explain_refusal(self, error_key: str, description: str = "") -> str:
        """Turn Keycloak's refusal into one plain sentence."""
        # Keycloak keys look like invalidPassword<Rule>Message.
        fixed = {
            "MinLength": (
                f"Your password is too short: use at least {self.min_length or 8} characters."
            ),
            "MaxLength": (
                f"Your password is too long: use at most {self.max_length or 64} characters."
            ),
            "NotUsername": "Your password cannot be your user ID.",
            "NotContainsUsername": "Your password cannot contain your user ID.",
            "NotEmail": "Your password cannot be your email address.",
            "Blacklisted": ("That password is too common and easy to guess. Choose another one."),
            "Generic": "That password is too common and easy to guess.",
            "History": "You used that password recently. Choose a new one.",
            "MinDigits": "Your password needs more digits.",
            "MinLowerCaseChars": "Your password needs more lower-case letters.",
            "MinUpperCaseChars": "Your password needs more capital letters.",
            "MinSpecialChars": "Your password needs more symbols.",
            "RegexPattern": "Your password does not follow the required pattern.",
        }
        rule = error_key.removeprefix("invalidPassword").removesuffix("Message")
        if rule in fixed:
            return fixed[rule]
        text = re.sub(r"^\s*invalid password:\s*", "", description or "", flags=re.IGNORECASE)
        text = text.strip()
        if not text:
            return "Keycloak did not accept that password. Choose another one."
        return text[0].upper() + text[1:]
