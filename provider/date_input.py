"""A date of birth asked as three labelled boxes, day / month / year (the GOV.UK date
input), the same in every language: a browser's date picker shows its own locale's order
(`mm/dd/yyyy`), which a student in Macau reads the wrong way round.

`read_date` is the rule (which boxes are wrong and what to say); `DateOfBirthField` puts
it in a form. Only a date that cannot be one is a form error: a real date that is not the
student's stays for the check that answers every wrong detail alike.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from flask_babel import lazy_gettext as _l
from wtforms import Field
from wtforms.utils import unset_value
from wtforms.validators import StopValidation

PARTS = ("day", "month", "year")
EARLIEST_YEAR = 1900
# What a box keeps to show again: more than any date needs, never a whole posted body.
KEEP = 8
_NUMBER = re.compile(r"^[0-9]+$")

MISSING = {
    ("day",): _l("Date of birth must include a day"),
    ("month",): _l("Date of birth must include a month"),
    ("year",): _l("Date of birth must include a year"),
    ("day", "month"): _l("Date of birth must include a day and month"),
    ("day", "year"): _l("Date of birth must include a day and year"),
    ("month", "year"): _l("Date of birth must include a month and year"),
}
EMPTY = _l("Enter your date of birth")
NOT_REAL = _l("Date of birth must be a real date, for example 27 3 2007")
YEAR_DIGITS = _l("Year must include 4 numbers, for example 2007")
IN_FUTURE = _l("Date of birth must be in the past")
LABELS = {"day": _l("Day"), "month": _l("Month"), "year": _l("Year")}
LABEL = _l("Date of birth")
HINT = _l("For example, 27 3 2007")


@dataclass(frozen=True)
class DateReading:
    """The date typed, or why not: the message and the boxes to highlight, in page order."""

    value: date | None
    message: Any = None  # a lazy string
    wrong: tuple[str, ...] = ()


def read_date(typed: dict[str, str | None], today: date) -> DateReading:
    """Read the three boxes. A box holding something that is not text (a file sent as
    the field) is `None`: not a real date."""
    clean = {part: _clean(typed.get(part, "")) for part in PARTS}
    if all(clean[part] == "" for part in PARTS):
        return DateReading(None, EMPTY, PARTS)
    missing = tuple(part for part in PARTS if clean[part] == "")
    if missing:
        return DateReading(None, MISSING[missing], missing)
    numbers = {part: _number(clean[part]) for part in PARTS}
    day, month, year = numbers["day"], numbers["month"], numbers["year"]
    wrong = tuple(
        part
        for part, ok in (
            ("day", day is not None and 1 <= day <= 31),
            ("month", month is not None and 1 <= month <= 12),
            ("year", year is not None),
        )
        if not ok
    )
    if wrong or day is None or month is None or year is None:
        return DateReading(None, NOT_REAL, wrong)
    if len(clean["year"] or "") != 4:
        return DateReading(None, YEAR_DIGITS, ("year",))
    if year < EARLIEST_YEAR:
        return DateReading(None, NOT_REAL, ("year",))
    try:
        value = date(year, month, day)
    except ValueError:  # 30 February: the day is what does not fit
        return DateReading(None, NOT_REAL, ("day",))
    if value > today:
        return DateReading(None, IN_FUTURE, PARTS)
    return DateReading(value)


def _clean(raw: str | None) -> str | None:
    """Full-width digits (a Chinese keyboard's) become ASCII; spaces go."""
    if raw is None:
        return None
    return "".join(unicodedata.normalize("NFKC", raw).split())


def _number(text: str | None) -> int | None:
    if text is None or len(text) > 4 or not _NUMBER.match(text):
        return None
    return int(text)


@dataclass(frozen=True)
class Box:
    """One of the three boxes as the template draws it."""

    part: str
    id: str
    name: str
    label: Any
    value: str
    wrong: bool
    autocomplete: str


class DateOfBirthField(Field):
    """Three inputs named `<name>-day`, `<name>-month`, `<name>-year`; `data` is the date
    (None until it is a real one). `wrong` names the boxes to highlight, and
    `error_anchor` is the id the error summary links to: the first wrong box."""

    def __init__(self, label: Any = None, **kwargs: Any) -> None:
        kwargs.setdefault("description", HINT)
        super().__init__(label or LABEL, **kwargs)
        self.typed: dict[str, str | None] = {part: "" for part in PARTS}
        self.wrong: tuple[str, ...] = ()

    def process(
        self,
        formdata: Any,
        data: Any = unset_value,
        extra_filters: Iterable[Any] | None = None,
    ) -> None:
        self.process_errors = []
        self.data = None if data is unset_value else data
        self.wrong = ()
        if formdata is None:
            return
        for part in PARTS:
            values = formdata.getlist(f"{self.name}-{part}")
            first = values[0] if values else ""
            self.typed[part] = first if isinstance(first, str) else None
        self.raw_data = [self.typed[part] or "" for part in PARTS]

    def pre_validate(self, form: Any) -> None:
        reading = read_date(self.typed, date.today())
        self.data = reading.value
        self.wrong = reading.wrong
        if reading.value is None:
            raise StopValidation(str(reading.message))

    def refuse(self, message: str) -> None:
        """A real date that is not the one on record: the whole date is wrong."""
        self.errors = [message]
        self.wrong = PARTS

    @property
    def error_anchor(self) -> str:
        return f"{self.id}-{(self.wrong or PARTS)[0]}"

    @property
    def boxes(self) -> list[Box]:
        return [
            Box(
                part=part,
                id=f"{self.id}-{part}",
                name=f"{self.name}-{part}",
                label=LABELS[part],
                value=(self.typed[part] or "")[:KEEP],
                wrong=part in self.wrong,
                autocomplete=f"bday-{part}",
            )
            for part in PARTS
        ]


def form_fields(value: date, name: str = "date_of_birth") -> dict[str, str]:
    """The three boxes as a browser posts them (for scripts and tests that fill the form)."""
    return {
        f"{name}-day": str(value.day),
        f"{name}-month": str(value.month),
        f"{name}-year": str(value.year),
    }
