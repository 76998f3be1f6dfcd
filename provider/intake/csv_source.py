"""Reading a Registry CSV: header names mapped in configuration, UTF-8 only.

    UMPASS_INTAKE_CSV_COLUMNS="user_id=Student Number,first_name=Given Name,..."

Fields the mapping leaves out keep the default header names below. A file that is not
UTF-8, or lacks a required column, is refused as a whole with one sentence that says
what to fix.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

from provider.intake.records import FIELDS, REQUIRED, IntakeSourceError, RawRecord

DEFAULT_COLUMNS = {
    "user_id": "Student Number",
    "first_name": "Given Name",
    "last_name": "Family Name",
    "email": "Email",
    "phone": "Mobile",
    "date_of_birth": "Date of Birth",
    "id_number": "ID Number",
    "programme": "Programme",
    "language": "Language",
}


def columns_from_env(env: Mapping[str, str]) -> dict[str, str]:
    raw = env.get("UMPASS_INTAKE_CSV_COLUMNS", "").strip()
    columns = dict(DEFAULT_COLUMNS)
    for pair in filter(None, (p.strip() for p in raw.split(","))):
        field, _, header = pair.partition("=")
        if field.strip() not in FIELDS or not header.strip():
            raise IntakeSourceError(
                f"UMPASS_INTAKE_CSV_COLUMNS: {pair!r} is not <field>=<header> with a field "
                f"among {', '.join(FIELDS)}"
            )
        columns[field.strip()] = header.strip()
    return columns


def read_csv(path: Path, columns: Mapping[str, str]) -> list[RawRecord]:
    """Every row at once (small files and tests); the import streams `csv_rows`."""
    return list(csv_rows(path, columns))


def csv_rows(path: Path, columns: Mapping[str, str]) -> Iterator[RawRecord]:
    """The rows one at a time, read line by line: memory does not grow with the file.

    The file is decoded a line at a time (no UTF-8 character holds a newline byte), so a
    byte that is not UTF-8 is reported by its line, as soon as the reading reaches it."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise IntakeSourceError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        reader = csv.DictReader(_utf8_lines(handle, path.name))
        headers = [h.strip() for h in reader.fieldnames or []]
        reader.fieldnames = headers  # " Email" and "Email" are one column to people
        missing = [columns[f] for f in REQUIRED if columns[f] not in headers]
        if missing:
            raise IntakeSourceError(
                f"{path.name} has no column {', '.join(repr(m) for m in missing)} "
                f"(it has {', '.join(repr(h) for h in headers) or 'no header line'}); "
                "rename the columns or set UMPASS_INTAKE_CSV_COLUMNS"
            )
        mapped = [(field, header) for field, header in columns.items() if header in headers]
        found = 0
        for row in reader:
            values = {field: (row.get(header) or "") for field, header in mapped}
            if not any(v.strip() for v in values.values()):
                continue  # blank lines at the end of spreadsheets
            found += 1
            yield RawRecord(where=f"line {reader.line_num}", values=values)
    if not found:
        raise IntakeSourceError(f"{path.name} has a header line but no students")


def _utf8_lines(handle: BinaryIO, name: str) -> Iterator[str]:
    """Lines as `csv` wants them: endings kept; CR, LF and CR LF each end a line."""
    encoding = "utf-8-sig"  # a byte-order mark, only at the very start
    for number, line in enumerate(handle, start=1):
        for piece in line.splitlines(keepends=True):  # bytes split at CR and LF only
            try:
                yield piece.decode(encoding)
            except UnicodeDecodeError:
                raise IntakeSourceError(
                    f"{name} is not UTF-8 text (first bad byte on line {number}): "
                    "save it as “CSV UTF-8” and import again"
                ) from None
            encoding = "utf-8"
