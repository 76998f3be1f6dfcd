"""CSV cells that a spreadsheet will not run: Registry names, emails and audit details end
up in Excel, where a cell starting with = + - @ (or a tab or carriage return before one)
is a formula."""

from __future__ import annotations

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text
