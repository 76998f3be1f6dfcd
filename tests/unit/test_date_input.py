"""The date of birth's three boxes: which box is wrong and what is said, in the order the
page asks (day, month, year). The page itself: tests/flows/test_identify.py."""

from __future__ import annotations

from datetime import date

import pytest

from provider import date_input as d

TODAY = date(2026, 12, 3)


def read(day: str | None, month: str | None, year: str | None) -> d.DateReading:
    return d.read_date({"day": day, "month": month, "year": year}, TODAY)


@pytest.mark.parametrize(
    ("typed", "value"),
    [
        (("27", "3", "2007"), date(2007, 3, 27)),
        (("07", "03", "2007"), date(2007, 3, 7)),
        ((" 1 ", "12", "1999"), date(1999, 12, 1)),
        (("２７", "３", "２００７"), date(2007, 3, 27)),  # a Chinese keyboard's full width
        (("29", "2", "2008"), date(2008, 2, 29)),
        (("3", "12", "2026"), TODAY),
    ],
)
def test_real_dates(typed: tuple[str, str, str], value: date) -> None:
    assert read(*typed) == d.DateReading(value)


@pytest.mark.parametrize(
    ("typed", "message", "wrong"),
    [
        (("", "", ""), d.EMPTY, ("day", "month", "year")),
        ((" ", "", "  "), d.EMPTY, ("day", "month", "year")),
        (("", "3", "2007"), d.MISSING[("day",)], ("day",)),
        (("27", "", "2007"), d.MISSING[("month",)], ("month",)),
        (("27", "3", ""), d.MISSING[("year",)], ("year",)),
        (("", "", "2007"), d.MISSING[("day", "month")], ("day", "month")),
        (("", "3", ""), d.MISSING[("day", "year")], ("day", "year")),
        (("27", "", ""), d.MISSING[("month", "year")], ("month", "year")),
        (("0", "3", "2007"), d.NOT_REAL, ("day",)),
        (("32", "3", "2007"), d.NOT_REAL, ("day",)),
        (("27", "13", "2007"), d.NOT_REAL, ("month",)),
        (("27", "March", "2007"), d.NOT_REAL, ("month",)),
        (("-1", "3", "20.7"), d.NOT_REAL, ("day", "year")),
        (("٢", "3", "2007"), d.NOT_REAL, ("day",)),  # a digit to int(), not to us
        (("30", "2", "2007"), d.NOT_REAL, ("day",)),
        (("31", "4", "2007"), d.NOT_REAL, ("day",)),
        (("27", "3", "07"), d.YEAR_DIGITS, ("year",)),
        (("27", "3", "20071"), d.NOT_REAL, ("year",)),
        (("27", "3", "1899"), d.NOT_REAL, ("year",)),
        (("4", "12", "2026"), d.IN_FUTURE, ("day", "month", "year")),
        ((None, "3", "2007"), d.NOT_REAL, ("day",)),  # a file sent as the day
    ],
)
def test_dates_that_cannot_be_one(
    typed: tuple[str | None, str | None, str | None], message: object, wrong: tuple[str, ...]
) -> None:
    assert read(*typed) == d.DateReading(None, message, wrong)


def test_form_fields_are_what_the_boxes_post() -> None:
    posted = d.form_fields(date(2007, 3, 27))
    assert posted == {
        "date_of_birth-day": "27",
        "date_of_birth-month": "3",
        "date_of_birth-year": "2007",
    }
    typed = {part: posted[f"date_of_birth-{part}"] for part in d.PARTS}
    assert d.read_date(typed, TODAY).value == date(2007, 3, 27)
