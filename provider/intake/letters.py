"""What the Registry hands out: a mail-merge CSV and one printable letter per student.

Both carry the codes in clear, so they are written once, to new files only the current
user can read, and never kept by the service.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO

from flask import Flask, render_template
from flask_babel import force_locale

from provider import i18n
from provider.spreadsheet import safe_cell

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@dataclass(frozen=True)
class Letter:
    user_id: str
    first_name: str
    last_name: str
    email: str
    language: str  # en | zh_Hant | pt
    code: str
    expires_at: datetime


CSV_HEADER = [
    "user_id",
    "first_name",
    "last_name",
    "email",
    "language",
    "activation_code",
    "expires",
]


class CodeSheet:
    """The mail-merge CSV, written as codes are issued (a crash leaves exactly the codes
    that were issued so far on paper), then the letters at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.letters: list[Letter] = []
        self._file = _create_private(path)
        self._writer = csv.writer(self._file)
        self._writer.writerow(CSV_HEADER)

    def add(self, letters: Sequence[Letter]) -> None:
        for letter in letters:
            self._writer.writerow(
                [
                    letter.user_id,
                    safe_cell(letter.first_name),
                    safe_cell(letter.last_name),
                    safe_cell(letter.email),
                    letter.language,
                    letter.code,
                    letter.expires_at.strftime("%Y-%m-%d"),
                ]
            )
        self._file.flush()
        os.fsync(self._file.fileno())
        self.letters.extend(letters)

    def close(self) -> None:
        self._file.close()


def letters_html(letters: Sequence[Letter], activation_url: str) -> str:
    """One page per student, each in the student's own language."""
    pages = []
    with _renderer().test_request_context():
        for letter in letters:
            with force_locale(letter.language):
                pages.append(
                    render_template("letters/letter.html", letter=letter, url=activation_url)
                )
        return render_template("letters/letters.html", pages=pages)


def _renderer() -> Flask:
    """The service's templates and catalogues without the service: a letter needs neither
    its routes nor its settings."""
    app = Flask(__name__, template_folder=str(TEMPLATES))
    i18n.install(app)
    return app


def write_once(path: Path, text: str) -> None:
    """Create `path` (mode 0600) with `text`; an existing file is never overwritten."""
    with _create_private(path) as out:
        out.write(text)


def _create_private(path: Path) -> TextIO:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise FileExistsError(
            f"{path} exists already: codes are written to new files only"
        ) from None
    return os.fdopen(fd, "w", encoding="utf-8", newline="")
