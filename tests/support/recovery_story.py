"""Whole recoveries walked through the real flow, for tests of what they leave behind (the
help desk's timeline, its lockouts, the chart, the metrics).

A contact gets at most one code a minute (`verification.CONTACT_GAP`; a start inside it
sends nothing, silently): a story sends one code by email and one by text message."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from flask import Flask

from provider.guards import lockout
from tests.support.flow_client import StudentDetails
from tests.support.inbox import Inbox
from tests.support.recovery import RecoveryClient


@dataclass
class Walked:
    """What a walk saw that must never show up elsewhere: the codes and passwords."""

    codes: list[str] = field(default_factory=list)
    passwords: list[str] = field(default_factory=list)


def new_password() -> str:
    return f"quiet harbour {secrets.randbelow(10**6):06d} kite"


def code_sent(
    client: RecoveryClient, inbox: Inbox, who: StudentDetails, typed: str, channel: str
) -> str:
    """Start a recovery in `client` and return the code the student received."""
    to = who.email if channel == "email" else who.phone
    before = len(inbox.mails_to(to) if channel == "email" else inbox.texts_to(to))
    started = client.start(typed, channel)
    assert started.headers.get("Location", "").endswith("/recover/code"), started.status_code
    if channel == "email":
        return inbox.email_code(who.email, after=before)
    return inbox.sms_code(who.phone, after=before)


def recover(
    app: Flask,
    inbox: Inbox,
    who: StudentDetails,
    *,
    choice: str,
    typed: str | None = None,
    channel: str = "email",
    walked: Walked | None = None,
) -> None:
    """One whole recovery: a code to `channel`, then unlock ("unlock") or a new password
    ("password")."""
    walked = walked if walked is not None else Walked()
    client = RecoveryClient(app, inbox)
    code = code_sent(client, inbox, who, typed or who.user_id, channel)
    walked.codes.append(code)
    proven = client.code(code)
    assert proven.headers.get("Location", "").endswith("/recover/choose"), proven.status_code
    chosen = client.post("choose", {"choice": choice})
    if choice == "password":
        password = new_password()
        walked.passwords.append(password)
        chosen = client.post("new-password", {"password": password, "confirm": password})
    assert chosen.headers.get("Location", "").endswith("/recover/finished"), chosen.status_code


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def lock_recovery(
    app: Flask,
    inbox: Inbox,
    who: StudentDetails,
    *,
    typed: str | None = None,
    channel: str = "email",
    sends: bool = True,
    walked: Walked | None = None,
) -> RecoveryClient:
    """Wrong codes in a row until the account's recovery locks. `sends=False`: the start
    sends no code (the contact had one less than a minute ago), and every code is wrong."""
    walked = walked if walked is not None else Walked()
    client = RecoveryClient(app, inbox)
    if sends:
        code = code_sent(client, inbox, who, typed or who.user_id, channel)
        walked.codes.append(code)
    else:
        started = client.start(typed or who.user_id, channel)
        assert started.headers.get("Location", "").endswith("/recover/code")
        code = "000000"
    for _ in range(lockout.MAX_FAILURES):
        assert client.code(wrong(code)).status_code == 400
    assert client.code(code).status_code == 429  # locked: even the right code waits
    return client
