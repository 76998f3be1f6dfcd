"""What the Registry hands out: a mail-merge CSV and one printable letter per student.

Both carry the codes in clear, so they are written once, to new files only the current
user can read, and never kept by the service.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from flask import Flask, render_template
from flask_babel import force_locale


@dataclass(frozen=True)
class Letter:
    user_id: str
    first_name: str
    last_name: str
    email: str
    language: str  # en | zh_Hant | pt
    code: str
    expires_at: datetime


def codes_csv(letters: Sequence[Letter]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["user_id", "first_name", "last_name", "email", "language", "activation_code", "expires"]
    )
    for letter in letters:
        writer.writerow(
            [
                letter.user_id,
                letter.first_name,
                letter.last_name,
                letter.email,
                letter.language,
                letter.code,
                letter.expires_at.strftime("%Y-%m-%d"),
            ]
        )
    return out.getvalue()


def letters_html(app: Flask, letters: Sequence[Letter], activation_url: str) -> str:
    """One page per student, each in the student's own language."""
    pages = []
    with app.test_request_context():
        for letter in letters:
            with force_locale(letter.language):
                pages.append(
                    render_template("letters/letter.html", letter=letter, url=activation_url)
                )
        return render_template("letters/letters.html", pages=pages)


def write_once(path: Path, text: str) -> None:
    """Create `path` (mode 0600); an existing file is never overwritten."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise FileExistsError(
            f"{path} exists already: codes are written to new files only"
        ) from None
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
        out.write(text)
