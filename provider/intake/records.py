"""One intake's students, as every source (Registry CSV, LDAP) hands them over, and the
checks that run on all of them before anything is written.

A source yields `RawRecord`s: text fields exactly as found, plus where they were found
("line 7", or an LDAP DN). `check_record` turns each into an `IntakeRecord` or
`Problem`s in plain words; `checked.check_intake` runs it over a whole intake, and an
import goes ahead only when no row has a problem, so nothing is ever half-imported.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from provider.contact_input import ContactRejected, PhonePolicy, clean_email, clean_phone
from provider.proofing import normalize_id_last4

# The fields every source maps onto (CSV header names and LDAP attribute names come
# from configuration); `programme` and `language` may be empty.
FIELDS = (
    "user_id",
    "first_name",
    "last_name",
    "email",
    "phone",
    "date_of_birth",
    "id_number",
    "programme",
    "language",
)
REQUIRED = ("user_id", "first_name", "last_name", "email", "phone", "date_of_birth", "id_number")
LANGUAGES = {
    "en": "en",
    "zh_hant": "zh_Hant",
    "zh-hant": "zh_Hant",
    "zh_tw": "zh_Hant",
    "zh-tw": "zh_Hant",
    "zh": "zh_Hant",
    "pt": "pt",
    "pt-pt": "pt",
    "pt_pt": "pt",
}
MAX_TEXT = 255
_USER_ID = re.compile(r"^[a-z0-9]+$")
_DATE_FORMATS = (
    re.compile(r"^(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})$"),
    re.compile(r"^(?P<d>\d{1,2})/(?P<m>\d{1,2})/(?P<y>\d{4})$"),
    re.compile(r"^(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})$"),  # LDAP-style 20070314
)


@dataclass(frozen=True)
class RawRecord:
    where: str  # "line 7" or "uid=dc12345,ou=students,dc=example,dc=edu"
    values: dict[str, str]


@dataclass(frozen=True)
class IntakeRecord:
    where: str
    user_id: str
    first_name: str
    last_name: str
    email: str
    phone: str  # E.164
    date_of_birth: date
    id_number: str = field(repr=False)
    programme: str = ""
    language: str = "en"


@dataclass(frozen=True)
class Problem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class IntakeSourceError(Exception):
    """The source cannot be read at all (file, encoding, columns, server); one sentence."""


class IntakeInvalid(Exception):
    """The intake has problems; nothing was written. `problems` holds the first ones
    found (in the source's order), `total` counts them all."""

    def __init__(self, problems: Sequence[Problem], total: int | None = None) -> None:
        self.problems = list(problems)
        self.total = max(total or 0, len(self.problems))
        super().__init__(f"{self.total} problem(s)")


def parse_date(text: str) -> date | None:
    for pattern in _DATE_FORMATS:
        match = pattern.match(text.strip())
        if match:
            try:
                return date(int(match["y"]), int(match["m"]), int(match["d"]))
            except ValueError:
                return None
    return None


@dataclass(frozen=True)
class Rules:
    """What a row is checked against."""

    user_id_length: int
    phone_policy: PhonePolicy | None = None
    today: date = field(default_factory=date.today)


def appears_twice(user_id: str, where: str, first_where: str) -> Problem:
    return Problem(where, f"student {user_id} appears twice (also {first_where})")


def check_record(item: RawRecord, rules: Rules, problems: list[Problem]) -> IntakeRecord | None:
    """The row as a record, or None with what is wrong with it added to `problems`."""
    user_id_length, phone_policy, today = rules.user_id_length, rules.phone_policy, rules.today
    v = {k: (item.values.get(k) or "").strip() for k in FIELDS}
    before = len(problems)

    def problem(message: str) -> None:
        problems.append(Problem(item.where, message))

    for name in REQUIRED:
        if not v[name]:
            problem(f"{name.replace('_', ' ')} is empty")
    for name in ("first_name", "last_name", "programme", "id_number"):
        # Keycloak's user profile allows 255; the partial import would refuse a whole
        # batch half-way through an intake, so longer values stop it here instead.
        if len(v[name]) > MAX_TEXT:
            problem(f"{name.replace('_', ' ')} is longer than {MAX_TEXT} characters")
    user_id = v["user_id"][:user_id_length].lower()
    if v["user_id"] and (len(user_id) != user_id_length or not _USER_ID.match(user_id)):
        problem(
            f"student number {v['user_id']!r} does not start with a "
            f"{user_id_length}-character user ID"
        )
    born = parse_date(v["date_of_birth"]) if v["date_of_birth"] else None
    if v["date_of_birth"] and born is None:
        problem("date of birth is not a real date (use YYYY-MM-DD)")
    elif born is not None and not (date(1900, 1, 1) <= born <= today):
        problem("date of birth is impossible (in the future, or before 1900)")
    if v["id_number"] and normalize_id_last4(v["id_number"]) is None:
        problem("ID/passport number has fewer than 4 letters or digits")
    email = phone = ""
    if v["email"]:
        try:
            email = clean_email(v["email"])
        except ContactRejected:
            problem("email is not one valid address")
    if v["phone"]:
        try:
            phone = clean_phone(v["phone"], phone_policy)
        except ContactRejected:
            problem("phone is not a mobile number we can text")
    language = LANGUAGES.get(v["language"].lower()) if v["language"] else "en"
    if language is None:
        problem(f"language {v['language']!r} is not en, zh_Hant or pt")
    if len(problems) > before or born is None:
        return None
    return IntakeRecord(
        where=item.where,
        user_id=user_id,
        first_name=v["first_name"],
        last_name=v["last_name"],
        email=email,
        phone=phone,
        date_of_birth=born,
        id_number=v["id_number"],
        programme=v["programme"],
        language=language or "en",
    )
