"""One-time codes that prove a phone number or an email address.

A code is 6 digits from `secrets`, valid `CODE_TTL`, single use, and stored only as an
HMAC over the verification row's id: it is bound to this flow and this contact, so it
proves nothing anywhere else. Wrong tries are counted *before* comparing, per flow and
contact, and a resend does not reset them. Sending is throttled per contact and per
flow, and the throttle answers before any gateway is called.
"""

from __future__ import annotations

import hmac
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from provider.keyed_hash import KeyedHasher, Purpose
from provider.storage.locks import serialise
from provider.storage.models import ContactSend, ContactVerification

CODE_TTL = timedelta(minutes=10)
MAX_WRONG = 5
CONTACT_GAP = timedelta(seconds=60)
CONTACT_PER_HOUR = 5
FLOW_PER_HOUR = 10
HOUR = timedelta(hours=1)


class Throttled(Exception):
    def __init__(self, retry_after: timedelta) -> None:
        super().__init__("throttled")
        self.seconds = max(1, math.ceil(retry_after.total_seconds()))


class CodeWrong(Exception):
    def __init__(self, remaining: int) -> None:
        super().__init__("wrong code")
        self.remaining = remaining


class CodeExpired(Exception):
    """The code is older than CODE_TTL (or none was sent): ask for a new one."""


class TooManyWrong(Exception):
    """MAX_WRONG wrong tries for this contact in this flow: no more codes for it here."""


@dataclass(frozen=True)
class NewCode:
    code: str
    expires_at: datetime


def contact_hash(hasher: KeyedHasher, channel: str, value: str) -> str:
    return hasher.digest(Purpose.CONTACT, f"{channel}:{value.lower()}")


def _code_hash(hasher: KeyedHasher, row_id: int, code: str) -> str:
    return hasher.digest(Purpose.CONTACT_CODE, f"{row_id}:{code}")


def _row(session: Session, flow_key: str, channel: str, contact: str) -> ContactVerification | None:
    # FOR UPDATE: on PostgreSQL parallel guesses or sends queue on the row (SQLite's
    # BEGIN IMMEDIATE already serialises writers), so no try or send is counted twice.
    return session.scalars(
        select(ContactVerification)
        .where(
            ContactVerification.flow_key == flow_key,
            ContactVerification.channel == channel,
            ContactVerification.contact_hash == contact,
        )
        .with_for_update()
    ).one_or_none()


def issue(
    sessions: sessionmaker[Session],
    hasher: KeyedHasher,
    *,
    flow_key: str,
    channel: str,
    value: str,
    now: datetime,
) -> tuple[NewCode, int]:
    """Check the throttles, then make a new code; returns it and the send's id (to undo
    with `forget_send` when the gateway fails, so a failure costs the student nothing)."""
    contact = contact_hash(hasher, channel, value)
    try:
        with sessions.begin() as session:
            # Count-then-insert: parallel sends for this contact or this flow take turns
            # (PostgreSQL), so each sees the ones before it and a throttle cannot be
            # passed twice on the same count.
            serialise(session, f"contact-send:{contact}", f"flow-send:{flow_key}")
            last, in_hour, oldest = session.execute(
                select(func.max(ContactSend.at), func.count(), func.min(ContactSend.at)).where(
                    ContactSend.contact_hash == contact, ContactSend.at > now - HOUR
                )
            ).one()
            if last is not None and now - last < CONTACT_GAP:
                raise Throttled(CONTACT_GAP - (now - last))
            if in_hour >= CONTACT_PER_HOUR:
                raise Throttled(oldest + HOUR - now)
            flow_oldest, flow_count = session.execute(
                select(func.min(ContactSend.at), func.count()).where(
                    ContactSend.flow_key == flow_key, ContactSend.at > now - HOUR
                )
            ).one()
            if flow_count >= FLOW_PER_HOUR:
                raise Throttled(flow_oldest + HOUR - now)
            row = _row(session, flow_key, channel, contact)
            if row is None:
                row = ContactVerification(
                    flow_key=flow_key,
                    channel=channel,
                    contact_hash=contact,
                    failures=0,
                    created_at=now,
                )
                session.add(row)
                session.flush()
            if row.failures >= MAX_WRONG:
                raise TooManyWrong
            code = f"{secrets.randbelow(10**6):06d}"
            row.code_hash = _code_hash(hasher, row.id, code)
            row.code_expires_at = now + CODE_TTL
            send = ContactSend(contact_hash=contact, flow_key=flow_key, at=now)
            session.add(send)
            session.flush()
            return NewCode(code=code, expires_at=now + CODE_TTL), send.id
    except IntegrityError:  # a parallel first send for this contact created the row
        raise Throttled(CONTACT_GAP) from None


def forget_send(sessions: sessionmaker[Session], send_id: int) -> None:
    with sessions.begin() as session:
        send = session.get(ContactSend, send_id)
        if send is not None:
            session.delete(send)


def wait_before_resend(
    sessions: sessionmaker[Session], hasher: KeyedHasher, channel: str, value: str, now: datetime
) -> int:
    """Seconds until this contact may get another code (0: now), for the countdown."""
    contact = contact_hash(hasher, channel, value)
    with sessions() as session:
        last = session.scalar(
            select(func.max(ContactSend.at)).where(ContactSend.contact_hash == contact)
        )
    if last is None or now - last >= CONTACT_GAP:
        return 0
    return math.ceil((CONTACT_GAP - (now - last)).total_seconds())


def check(
    sessions: sessionmaker[Session],
    hasher: KeyedHasher,
    *,
    flow_key: str,
    channel: str,
    value: str,
    code: str,
    now: datetime,
) -> None:
    """Accept the code (once) or raise CodeWrong / CodeExpired / TooManyWrong."""
    contact = contact_hash(hasher, channel, value)
    typed = "".join(code.split())
    with sessions.begin() as session:
        row = _row(session, flow_key, channel, contact)
        if row is None or row.code_hash is None or row.code_expires_at is None:
            raise CodeExpired
        if row.failures >= MAX_WRONG:
            raise TooManyWrong
        if now >= row.code_expires_at:
            raise CodeExpired
        row.failures += 1  # counted before comparing; given back on a match
        session.flush()
        right = hmac.compare_digest(_code_hash(hasher, row.id, typed), row.code_hash)
        if right:
            row.failures -= 1
            row.code_hash = None  # single use
            row.verified_at = now
            return
        remaining = MAX_WRONG - row.failures
    if remaining <= 0:
        raise TooManyWrong
    raise CodeWrong(remaining)


def is_verified(
    sessions: sessionmaker[Session], hasher: KeyedHasher, flow_key: str, channel: str, value: str
) -> bool:
    contact = contact_hash(hasher, channel, value)
    with sessions() as session:
        row = _row(session, flow_key, channel, contact)
        return row is not None and row.verified_at is not None
