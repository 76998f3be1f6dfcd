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
    """The mail-merge CSV and, when asked for, the printable letters, both written as codes
    are issued, a batch at a time: a crash leaves on paper exactly the codes issued so far,
    and nothing of a batch stays in memory once it is written."""

    def __init__(
        self, path: Path, letters_path: Path | None = None, activation_url: str = ""
    ) -> None:
        self.path = path
        self.letters_path = letters_path
        self.count = 0  # letters written
        self._url = activation_url
        self._file = _create_private(path)
        self._writer = csv.writer(self._file)
        self._writer.writerow(CSV_HEADER)
        self._pages: TextIO | None = None
        self._app: Flask | None = None
        self._tail = ""
        if letters_path is not None:
            try:
                self._pages = _create_private(letters_path)
            except BaseException:
                self._file.close()
                path.unlink()
                raise
            self._app = _renderer()
            head, self._tail = _letters_frame(self._app)
            self._pages.write(head)

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
        _sync(self._file)
        if self._pages is not None and self._app is not None:
            self._pages.write("".join(_pages(self._app, letters, self._url)))
            _sync(self._pages)
        self.count += len(letters)

    def close(self) -> None:
        """Finish both files; when no code was written, remove them (nothing to hand out)."""
        self._file.close()
        if self._pages is not None:
            self._pages.write(self._tail)
            self._pages.close()
        if not self.count:
            self.path.unlink(missing_ok=True)
            if self.letters_path is not None:
                self.letters_path.unlink(missing_ok=True)


_PAGES_MARK = "\0pages\0"


def _letters_frame(app: Flask) -> tuple[str, str]:
    """The letters file before and after its pages."""
    with app.test_request_context():
        frame = render_template("letters/letters.html", pages=[_PAGES_MARK])
    head, _, tail = frame.partition(_PAGES_MARK)
    return head, tail


def _pages(app: Flask, letters: Sequence[Letter], activation_url: str) -> list[str]:
    with app.test_request_context():
        pages = []
        for letter in letters:
            with force_locale(letter.language):
                pages.append(
                    render_template("letters/letter.html", letter=letter, url=activation_url)
                )
        return pages


def _sync(file: TextIO) -> None:
    file.flush()
    os.fsync(file.fileno())


def _renderer() -> Flask:
    """The service's templates and catalogues without the service: a letter needs neither
    its routes nor its settings."""
    app = Flask(__name__, template_folder=str(TEMPLATES))
    i18n.install(app)
    return app


def _create_private(path: Path) -> TextIO:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise FileExistsError(
            f"{path} exists already: codes are written to new files only"
        ) from None
    return os.fdopen(fd, "w", encoding="utf-8", newline="")
