"""One-time codes that prove a phone number or an email address.

A code is 6 digits from `secrets`, valid `CODE_TTL`, single use, and stored only as an
HMAC over the verification row's id: it is bound to this flow and this contact, so it
proves nothing anywhere else. Wrong tries are counted *before* comparing, per flow and
contact, and a resend does not reset them. Sending is throttled per contact, per flow
and per student (across every flow the student opens: identifying again does not buy a
fresh budget), and a text takes a unit of the service's daily budget; each refusal
answers before any gateway is called and changes nothing but the refusal's audit and
count.
"""

from __future__ import annotations

import hmac
import math
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from provider import audit
from provider.guards import send_budget
from provider.keyed_hash import KeyedHasher, Purpose
from provider.storage.locks import serialise
from provider.storage.models import ContactSend, ContactVerification

CODE_TTL = timedelta(minutes=10)
MAX_WRONG = 5
CONTACT_GAP = timedelta(seconds=60)
CONTACT_PER_HOUR = 5
FLOW_PER_HOUR = 10
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass(frozen=True)
class SendCaps:
    """The configurable caps: sends per student in each window (amount, span; spans of
    at most a day, what `umpass purge` keeps), and texts per UTC day for the service."""

    student: tuple[tuple[int, timedelta], ...] = ((6, HOUR), (10, DAY))
    sms_budget: int = 2000

    @classmethod
    def from_settings(cls, student_send_limit: str, sms_daily_budget: int) -> SendCaps:
        from limits import parse_many

        windows = tuple(
            (item.amount, timedelta(seconds=item.get_expiry()))
            for item in parse_many(student_send_limit)
        )
        return cls(student=windows, sms_budget=sms_daily_budget)


class Throttled(Exception):
    def __init__(self, retry_after: timedelta) -> None:
        super().__init__("throttled")
        self.seconds = max(1, math.ceil(retry_after.total_seconds()))


class StudentCapped(Throttled):
    """The student's sends across all their flows reached a cap (a throttle too)."""


class SmsBudgetSpent(Exception):
    """Today's texts are spent (`seconds` until the next UTC day), or texts are off
    (budget 0: `seconds` is None)."""

    def __init__(self, retry_after: timedelta | None) -> None:
        super().__init__("sms budget spent")
        self.seconds = (
            None if retry_after is None else max(1, math.ceil(retry_after.total_seconds()))
        )


@dataclass(frozen=True)
class Send:
    """A send `issue` counted, to undo with `forget_send` when the gateway fails."""

    id: int
    sms_day: date | None  # the day whose text budget it took from (texts only)


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
    student: str,
    channel: str,
    value: str,
    now: datetime,
    caps: SendCaps = SendCaps(),
) -> tuple[NewCode, Send]:
    """Check the throttles and the text budget, then make a new code; returns it and the
    send (to undo with `forget_send` when the gateway fails, so a failure costs the
    student nothing). A refusal by the student's cap or the budget is audited."""
    return issue_hashed(
        sessions,
        hasher,
        flow_key=flow_key,
        student=student,
        channel=channel,
        contact=contact_hash(hasher, channel, value),
        now=now,
        caps=caps,
    )


def issue_hashed(
    sessions: sessionmaker[Session],
    hasher: KeyedHasher,
    *,
    flow_key: str,
    student: str,
    channel: str,
    contact: str,
    now: datetime,
    caps: SendCaps = SendCaps(),
) -> tuple[NewCode, Send]:
    """`issue` for a contact known by its hash (`contact_hash`) only."""
    try:
        with sessions.begin() as session:
            # Count-then-insert: parallel sends for this contact, this flow or this student
            # take turns (PostgreSQL), so each sees the ones before it and a throttle
            # cannot be passed twice on the same count.
            serialise(
                session,
                f"contact-send:{contact}",
                f"flow-send:{flow_key}",
                f"student-send:{student}",
            )
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
            _check_student_cap(session, student, caps, now)
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
            sms_day = None
            if channel == "phone":
                # Last: every other check passed, so a unit is taken only for a real send.
                sms_day = send_budget.reserve(session, now, caps.sms_budget)
                if sms_day is None:
                    raise SmsBudgetSpent(
                        send_budget.until_next_day(now) if caps.sms_budget > 0 else None
                    )
            code = f"{secrets.randbelow(10**6):06d}"
            row.code_hash = _code_hash(hasher, row.id, code)
            row.code_expires_at = now + CODE_TTL
            send = ContactSend(contact_hash=contact, flow_key=flow_key, user_id=student, at=now)
            session.add(send)
            session.flush()
            return NewCode(code=code, expires_at=now + CODE_TTL), Send(send.id, sms_day)
    except IntegrityError:  # a parallel first send for this contact created the row
        raise Throttled(CONTACT_GAP) from None
    except StudentCapped:
        _refused(sessions, send_budget.STUDENT_CAP, student, channel, now)
        raise
    except SmsBudgetSpent:
        _refused(sessions, send_budget.SMS_BUDGET, student, channel, now)
        raise


def _check_student_cap(session: Session, student: str, caps: SendCaps, now: datetime) -> None:
    """Raise StudentCapped when a window already holds its amount of the student's sends,
    with the wait until enough of them leave every full window."""
    if not caps.student:
        return
    longest = max(span for _, span in caps.student)
    times = session.scalars(
        select(ContactSend.at)
        .where(ContactSend.user_id == student, ContactSend.at > now - longest)
        .order_by(ContactSend.at)
    ).all()
    waits = []
    for amount, span in caps.student:
        inside = [t for t in times if t > now - span]
        if len(inside) >= amount:
            # The send that must leave the window for one more to fit.
            waits.append(inside[len(inside) - amount] + span - now)
    if waits:
        raise StudentCapped(max(waits))


def _refused(
    sessions: sessionmaker[Session], reason: str, student: str, channel: str, now: datetime
) -> None:
    """Audit and count a refusal, in a transaction of its own (the send's rolled back).
    The audit names the student and the channel, never the contact."""
    with sessions.begin() as session:
        audit.record(
            session, audit.STUDENT, "contacts.send_refused", student, reason=reason, channel=channel
        )
        send_budget.count_refusal(session, now, reason)


def forget_send(sessions: sessionmaker[Session], send: Send) -> None:
    """Undo a send whose delivery failed: it counts against no throttle, and a text's
    unit goes back to the budget."""
    with sessions.begin() as session:
        row = session.get(ContactSend, send.id)
        if row is not None:
            session.delete(row)
            if send.sms_day is not None:
                send_budget.give_back(session, send.sms_day)


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
    check_hashed(
        sessions,
        hasher,
        flow_key=flow_key,
        channel=channel,
        contact=contact_hash(hasher, channel, value),
        code=code,
        now=now,
    )


def check_hashed(
    sessions: sessionmaker[Session],
    hasher: KeyedHasher,
    *,
    flow_key: str,
    channel: str,
    contact: str,
    code: str,
    now: datetime,
) -> None:
    """`check` for a contact known by its hash only."""
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


def arm_decoy(
    sessions: sessionmaker[Session],
    hasher: KeyedHasher,
    *,
    flow_key: str,
    channel: str,
    contact: str,
    now: datetime,
) -> None:
    """A code record that nothing was sent for and no code can match, for a flow that must
    answer exactly like one that sent a code: wrong tries, expiry and the end of tries
    count the same.

    Again (a resend that sent nothing, e.g. refused silently by a throttle) it restarts
    the expiry, as a new code would, and keeps a code that is still live: the student may
    hold a real one, and a refusal they are not told of must not take it away. Only an
    expired code, or none, becomes the decoy."""
    with sessions.begin() as session:
        row = _row(session, flow_key, channel, contact)
        if row is None:
            row = ContactVerification(
                flow_key=flow_key, channel=channel, contact_hash=contact, failures=0, created_at=now
            )
            session.add(row)
            session.flush()
        if row.failures < MAX_WRONG:
            expires = row.code_expires_at
            if row.code_hash is None or expires is None or now >= expires:
                # Not a 6-digit code's hash: no typed code ever matches it.
                row.code_hash = hasher.digest(
                    Purpose.CONTACT_CODE, f"decoy:{secrets.token_hex(16)}"
                )
            row.code_expires_at = now + CODE_TTL


def is_verified(
    sessions: sessionmaker[Session], hasher: KeyedHasher, flow_key: str, channel: str, value: str
) -> bool:
    contact = contact_hash(hasher, channel, value)
    with sessions() as session:
        row = _row(session, flow_key, channel, contact)
        return row is not None and row.verified_at is not None
