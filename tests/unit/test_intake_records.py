"""Intake rows are checked before anything is written; every problem says where and what."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from provider.intake.checked import validate
from provider.intake.csv_source import DEFAULT_COLUMNS, columns_from_env, read_csv
from provider.intake.records import IntakeInvalid, IntakeSourceError, RawRecord

HEADER = (
    "Student Number,Given Name,Family Name,Email,Mobile,Date of Birth,ID Number,Programme,Language"
)
GOOD = "dc1234567,Ana,Lei,ana.lei@example.edu,+853 6234 5678,2007-03-14,1234567(8),BSc CS,pt"


def _write(tmp_path: Path, text: str | bytes, name: str = "intake.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def _validate(records: list[RawRecord]):
    return validate(records, user_id_length=7, today=date(2026, 11, 27))


def test_a_good_row_becomes_a_record(tmp_path: Path) -> None:
    raw = read_csv(_write(tmp_path, f"\ufeff{HEADER}\n{GOOD}\n\n"), DEFAULT_COLUMNS)
    [record] = _validate(raw)
    assert record.user_id == "dc12345"  # the first 7 characters of the student number
    assert record.phone == "+85362345678"
    assert record.date_of_birth == date(2007, 3, 14)
    assert record.language == "pt" and record.programme == "BSc CS"
    assert "1234567" not in repr(record)  # the ID number is never printed


def test_every_problem_is_reported_by_line(tmp_path: Path) -> None:
    rows = [
        GOOD,
        "dc1234567,Ana,Lei,ana2@example.edu,+85362345679,2007-03-14,1234567(8),,",  # duplicate
        "dc2345678,Bo,Wu,not-an-email,+85362345670,2007-02-30,AB1,,xx",
        "dc3456789,,Ho,ho@example.edu,12,2030-01-01,A1234567,,",
    ]
    with pytest.raises(IntakeInvalid) as caught:
        _validate(read_csv(_write(tmp_path, "\n".join([HEADER, *rows]) + "\n"), DEFAULT_COLUMNS))
    text = "\n".join(str(p) for p in caught.value.problems)
    assert "line 3: student dc12345 appears twice (also line 2)" in text
    assert "line 4: email is not one valid address" in text
    assert "line 4: date of birth is not a real date" in text
    assert "line 4: ID/passport number has fewer than 4 letters or digits" in text
    assert "line 4: language 'xx' is not en, zh_Hant or pt" in text
    assert "line 5: first name is empty" in text
    assert "line 5: date of birth is impossible" in text
    assert "line 5: phone is not a mobile number we can text" in text
    # No personal value is repeated back (messages end up in terminals and cron mails).
    for value in ("not-an-email", "2007-02-30", "2030-01-01", "AB1"):
        assert value not in text


def test_wrong_encoding_is_one_sentence(tmp_path: Path) -> None:
    latin1 = (
        f"{HEADER}\n{GOOD}\ndc9876543,João,Sousa,j@example.edu,+85362345671,2007-07-30,P4455667,,\n"
    )
    with pytest.raises(IntakeSourceError, match=r"not UTF-8 text \(first bad byte on line 3\)"):
        read_csv(_write(tmp_path, latin1.encode("latin-1")), DEFAULT_COLUMNS)


def test_missing_columns_are_named(tmp_path: Path) -> None:
    with pytest.raises(IntakeSourceError, match="no column 'Date of Birth'"):
        read_csv(
            _write(tmp_path, "Student Number,Given Name,Family Name,Email,Mobile,ID Number\n"),
            DEFAULT_COLUMNS,
        )


def test_header_names_come_from_configuration(tmp_path: Path) -> None:
    columns = columns_from_env({"UMPASS_INTAKE_CSV_COLUMNS": "user_id=學號, date_of_birth=DOB"})
    text = HEADER.replace("Student Number", "學號").replace("Date of Birth", "DOB")
    [record] = _validate(read_csv(_write(tmp_path, f"{text}\n{GOOD}\n"), columns))
    assert record.user_id == "dc12345"
    with pytest.raises(IntakeSourceError):
        columns_from_env({"UMPASS_INTAKE_CSV_COLUMNS": "birthday=DOB"})


def test_empty_file_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(IntakeSourceError, match="no students"):
        read_csv(_write(tmp_path, HEADER + "\n"), DEFAULT_COLUMNS)
    with pytest.raises(IntakeSourceError, match="cannot read"):
        read_csv(tmp_path / "absent.csv", DEFAULT_COLUMNS)
