"""Filling the date of birth in a browser: three labelled boxes, day / month / year."""

from __future__ import annotations

from datetime import date

from playwright.sync_api import Page


def fill_date_of_birth(page: Page, born: date) -> None:
    """By the boxes' ids, so it works in every language."""
    page.fill("#date_of_birth-day", str(born.day))
    page.fill("#date_of_birth-month", str(born.month))
    page.fill("#date_of_birth-year", str(born.year))


def type_date_of_birth(page: Page, born: date) -> None:
    """As an English-reading student finds them: the group named by its legend, each box
    by its label."""
    group = page.get_by_role("group", name="Date of birth")
    group.get_by_label("Day").fill(str(born.day))
    group.get_by_label("Month").fill(str(born.month))
    group.get_by_label("Year").fill(str(born.year))
