"""Development only: every email and text message the service sent, readable with its links.

`scripts/dev`'s mail catcher (scripts/devstack/mail_catcher.py) keeps each email as it
arrived (`NNNN-….eml`) beside a decoded copy (`.txt`: headers and the plain-text body,
quoted-printable undone, so links stay whole). /dev/mail shows them, newest first, beside
the SMS outbox. The blueprint is registered only when UMPASS_ENV=development: a production
service has no such page at all (the codes in these messages are live).
"""

from __future__ import annotations

import email
import email.policy
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

from flask import Blueprint, current_app, render_template
from flask.typing import ResponseReturnValue

bp = Blueprint("dev_mail", __name__, url_prefix="/dev")

SHOWN = 50  # the newest messages of each kind
_LINK = re.compile(r"https?://[^\s<>\"']+")


@dataclass(frozen=True)
class Mail:
    name: str
    sender: str
    to: str
    subject: str
    date: str
    text: str


def parse(raw: bytes, name: str = "", received: str = "") -> Mail:
    """One message; `received` stands in for a missing Date header (the service's mailer
    leaves it to the mail server)."""
    message = email.message_from_bytes(raw, _class=EmailMessage, policy=email.policy.default)
    body = message.get_body(preferencelist=("plain", "html"))
    text = body.get_content() if body is not None else ""
    return Mail(
        name=name,
        sender=str(message.get("From", "")),
        to=str(message.get("To", "")),
        subject=str(message.get("Subject", "")),
        date=str(message.get("Date", "")) or received,
        text=text.replace("\r\n", "\n"),
    )


def decoded(mail: Mail) -> str:
    """The .txt a developer reads in a terminal or editor."""
    return (
        f"From: {mail.sender}\nTo: {mail.to}\nSubject: {mail.subject}\nDate: {mail.date}\n\n"
        f"{mail.text.rstrip()}\n"
    )


def with_links(text: str) -> list[tuple[str, bool]]:
    """`text` cut into (piece, is_a_link), for the template to link without trusting it."""
    pieces: list[tuple[str, bool]] = []
    at = 0
    for match in _LINK.finditer(text):
        url = match.group(0).rstrip(".,;:)")
        pieces.append((text[at : match.start()], False))
        pieces.append((url, True))
        at = match.start() + len(url)
    pieces.append((text[at:], False))
    return [piece for piece in pieces if piece[0]]


def newest_mails(folder: Path, count: int = SHOWN) -> list[Mail]:
    files = sorted(folder.glob("*.eml"), reverse=True)[:count]
    return [parse(path.read_bytes(), path.name, _modified(path)) for path in files]


def _modified(path: Path) -> str:
    stamp = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    return stamp.strftime("%Y-%m-%d %H:%M:%S UTC")


def newest_texts(outbox: Path, count: int = SHOWN) -> list[dict[str, str]]:
    try:
        lines = outbox.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    texts = []
    for line in reversed(lines[-count:]):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            texts.append({k: str(entry.get(k, "")) for k in ("at", "to", "text")})
    return texts


@bp.get("/mail")
def mailbox() -> ResponseReturnValue:
    config = current_app.config
    return render_template(
        "dev/mail.html",
        mails=newest_mails(Path(config["UMPASS_DEV_MAIL_DIR"])),
        texts=newest_texts(Path(config["UMPASS_DEV_SMS_OUTBOX"])),
        with_links=with_links,
    )
