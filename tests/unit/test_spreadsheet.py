"""Formula-safe CSV cells: what Excel or LibreOffice would run starts with a quote."""

from __future__ import annotations

import csv
import io

import pytest

from provider.spreadsheet import safe_cell


@pytest.mark.parametrize(
    "value",
    [
        '=HYPERLINK("http://evil.example","click")',
        "+1+cmd|' /C calc'!A0",
        "-2+3",
        "@SUM(A1:A2)",
        "\t=1+1",
        "\r=1+1",
    ],
)
def test_what_a_spreadsheet_would_run_is_quoted(value: str) -> None:
    assert safe_cell(value) == "'" + value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Ana Lei", "Ana Lei"),
        ("陳偉文", "陳偉文"),
        ("ana@example.edu", "ana@example.edu"),
        ("a=b", "a=b"),  # only a leading sign starts a formula
        ("", ""),
        (None, ""),
        (42, "42"),
    ],
)
def test_plain_values_are_left_alone(value: object, expected: str) -> None:
    assert safe_cell(value) == expected


def test_a_written_row_reads_back_as_text() -> None:
    out = io.StringIO()
    csv.writer(out).writerow([safe_cell("=1+1"), safe_cell("Ana")])
    assert next(csv.reader(io.StringIO(out.getvalue()))) == ["'=1+1", "Ana"]
