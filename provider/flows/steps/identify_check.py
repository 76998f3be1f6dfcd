"""The identify step's check: do the four details name one pending student?

User ID, activation code, date of birth and the last 4 characters of the ID/passport
number must all match. Every kind of mismatch (unknown ID, wrong code, wrong date, wrong
digits, used, expired or revoked code, account already active) gets the same answer;
the comparison always does the same work, and failures are padded to one duration.
A typed ID locked repeatedly also needs a solved proof-of-work challenge for a while
(`lockout.hot`); without one the attempt is a failure like any mismatch, counted the same.
"""

from __future__ import annotations

import hmac
import math
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import bindparam, select, update

from provider import audit
from provider.activation_codes import usable_code
from provider.guards import challenge, lockout
from provider.keycloak import (
    PHONE_NUMBER,
    PHONE_NUMBER_VERIFIED,
    STATE_PENDING,
    KeycloakUser,
    UserNotFound,
)
from provider.keyed_hash import Purpose
from provider.proofing import (
    normalize_date_of_birth,
    normalize_id_last4,
    normalize_user_id,
)
from provider.services import Services
from provider.storage.engine import bind_of
from provider.storage.models import Student

# Every failed identify answer takes at least this long, whatever failed.
FAILURE_FLOOR_SECONDS = 0.25
_STUDENTS = Student.__table__
_STUDENT = select(_STUDENTS.c.dob_hash, _STUDENTS.c.id_last4_hash, _STUDENTS.c.keycloak_id).where(
    _STUDENTS.c.user_id == bindparam("user_id")
)


@dataclass(frozen=True)
class Proven:
    user_id: str
    keycloak_id: str
    code_id: int
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    email_verified: bool = False
    phone_verified: bool = False

    @property
    def email_local(self) -> str | None:
        return self.email.split("@")[0] if self.email else None


def minutes_until(until: datetime, now: datetime) -> int:
    return max(1, math.ceil((until - now).total_seconds() / 60))


class IdentifyFailed(Exception):
    """The details did not match (deliberately says nothing about which).

    `hot`: the typed ID's proof-of-work state after this attempt (the page shows the
    check), the same whether or not the ID exists."""

    def __init__(self, hot: lockout.Hot | None = None) -> None:
        super().__init__("failed")
        self.hot = hot


class IdentifyLocked(Exception):
    """Too many failures for this user ID: try again later."""

    def __init__(self, until: datetime, now: datetime, hot: lockout.Hot | None = None) -> None:
        super().__init__("locked")
        self.minutes = minutes_until(until, now)
        self.hot = hot


def identify(
    svc: Services,
    *,
    typed_user_id: str,
    typed_code: str,
    date_of_birth: date,
    typed_id_last4: str,
    challenge_payload: str | None = None,
    now: datetime | None = None,
) -> Proven:
    """Check the four details (and, for a hot ID, the solved challenge); raise
    `IdentifyFailed` or `IdentifyLocked` otherwise."""
    started = time.monotonic()
    now = now or datetime.now(UTC)
    user_id = normalize_user_id(typed_user_id, svc.settings.user_id_length)
    lock_key = lockout.lock_key(user_id or typed_user_id)
    # The audit log names a user ID, never raw typing (which may be a code or an ID
    # number typed into the wrong box).
    subject = user_id or "(malformed)"
    try:
        locked_until = lockout.begin_attempt(svc.sessions, lock_key, now)
        if locked_until is not None:
            audit.record_now(svc.sessions, audit.STUDENT, "identify.locked", subject)
            raise IdentifyLocked(locked_until, now, hot_now(svc, lock_key, now))
        # The check comes before the details, so a refused one says nothing about them.
        hot = hot_now(svc, lock_key, now)
        needs_check = hot is not None and hot.needs_check(now)
        try:
            passed = not needs_check or challenge.redeem(
                svc.sessions, svc.hasher, challenge_payload, now
            )
            result = (
                _compare(svc, typed_user_id, typed_code, date_of_birth, typed_id_last4, now)
                if passed
                else None
            )
        except Exception:
            # No answer was given (Keycloak or the database failed): not a failure of
            # the student's. Uncounted, it cannot strand the ID without a lock's end.
            lockout.release_attempt(svc.sessions, lock_key)
            raise
        if not passed:
            raise _failed(svc, lock_key, subject, now, reason="challenge")
        if result is None:
            raise _failed(svc, lock_key, subject, now)
        with bind_of(svc.sessions).begin() as conn:
            lockout.record_success_in(conn, lock_key, now)
            audit.record(conn, audit.STUDENT, "identify.ok", result.user_id)
        return result
    except (IdentifyFailed, IdentifyLocked):
        remaining = FAILURE_FLOOR_SECONDS - (time.monotonic() - started)
        if remaining > 0:
            time.sleep(remaining)
        raise


def hot_now(svc: Services, lock_key: str, now: datetime) -> lockout.Hot | None:
    settings = svc.settings
    return lockout.hot(
        svc.sessions,
        lock_key,
        now,
        after_locks=settings.challenge_after_locks,
        window=timedelta(minutes=settings.challenge_window_minutes),
    )


def _failed(
    svc: Services, lock_key: str, subject: str, now: datetime, **detail: str
) -> IdentifyFailed:
    """Count the failure (which may start a lock) and audit it; the exception to raise."""
    lock = lockout.record_failure(svc.sessions, lock_key, now)
    audit.record_now(svc.sessions, audit.STUDENT, "identify.failed", subject, **detail)
    if lock is not None:
        audit.record_now(
            svc.sessions,
            audit.STUDENT,
            audit.LOCK_STARTED,
            subject,
            until=lock.until.isoformat(timespec="seconds"),
            in_a_row=lock.in_a_row,
        )
    return IdentifyFailed(hot_now(svc, lock_key, now))


def _compare(
    svc: Services,
    typed_user_id: str,
    typed_code: str,
    date_of_birth: date,
    typed_id_last4: str,
    now: datetime,
) -> Proven | None:
    h = svc.hasher
    user_id = normalize_user_id(typed_user_id, svc.settings.user_id_length) or ""
    # All three HMACs are computed and both rows looked up on every path, matching or not.
    dob_hash = h.digest(Purpose.DATE_OF_BIRTH, normalize_date_of_birth(date_of_birth))
    last4_hash = h.digest(Purpose.ID_LAST4, normalize_id_last4(typed_id_last4) or "")
    with bind_of(svc.reads).connect() as conn:
        student = conn.execute(_STUDENT, {"user_id": user_id}).first() if user_id else None
        code = usable_code(conn, h, user_id, typed_code, now)
    unknown = "0" * len(dob_hash)  # compared against when there is no student
    matches = [
        student is not None,
        hmac.compare_digest(dob_hash, student.dob_hash if student else unknown),
        hmac.compare_digest(last4_hash, student.id_last4_hash if student else unknown),
        code is not None,
    ]
    if not all(matches) or code is None:
        return None
    # Only a caller who already knows every secret gets this far: the Keycloak lookup's
    # timing reveals nothing to anyone else.
    user = _account(svc, user_id, student.keycloak_id if student else None)
    if user is None or user.activation_state != STATE_PENDING:
        return None
    return Proven(
        user_id=user_id,
        keycloak_id=user.id,
        code_id=code.id,
        first_name=user.first_name,
        last_name=user.last_name,
        email=user.email,
        phone=user.attribute(PHONE_NUMBER),
        email_verified=user.email_verified,
        phone_verified=user.attribute(PHONE_NUMBER_VERIFIED) == "true",
    )


def _account(svc: Services, user_id: str, known_id: str | None) -> KeycloakUser | None:
    """The Keycloak account named `user_id`: read by the id stored at enrolment (one
    cheap read), else, or when that account is gone or now has another username, found
    by username (a search, which Keycloak's fine-grained permissions make ~20x dearer)
    and its id remembered for next time."""
    if known_id:
        try:
            user = svc.keycloak.get_user(known_id)
        except UserNotFound:
            user = None
        if user is not None and user.username == user_id:
            return user
    user = svc.keycloak.find_user(user_id)
    if user is not None and user.id != known_id:
        with svc.sessions.begin() as session:
            session.execute(
                update(Student).where(Student.user_id == user_id).values(keycloak_id=user.id)
            )
    return user
