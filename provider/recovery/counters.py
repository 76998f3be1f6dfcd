"""Recovery's wrong-try counters (in `guards.lockout`'s table).

Two of them. The *typed* one counts on what the start typed, as the lookup reads it: its
lock is the 429 a student sees, the same whether or not the typing names an account, so
a lock says nothing about who exists or which email is whose. The *account's* one
(`r/<user ID>`) counts for a recoverable account whatever way it was typed, so switching
between user ID and email buys no fresh tries; it is never shown before the proof: while
it is locked, a code answers exactly as a wrong one (it is counted as one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from provider.guards import lockout
from provider.recovery.state import RecoveryData
from provider.services import Services


@dataclass(frozen=True)
class Attempt:
    locked_until: datetime | None  # the typed counter's lock: shown (429)
    # The account's: before the proof never shown (the try is a wrong one).
    account_locked_until: datetime | None = None

    @property
    def account_locked(self) -> bool:
        return self.account_locked_until is not None


def _account_key(data: RecoveryData) -> str | None:
    key = data.account_lock_key
    return key if key and key != data.lock_key else None


def begin(svc: Services, data: RecoveryData, now: datetime) -> Attempt:
    until = lockout.begin_attempt(svc.sessions, data.lock_key, now)
    if until is not None:
        return Attempt(until)
    account = _account_key(data)
    if account is None:
        return Attempt(None)
    return Attempt(None, lockout.begin_attempt(svc.sessions, account, now))


def failed(svc: Services, data: RecoveryData, now: datetime) -> list[lockout.Lock]:
    """Count a wrong try on both; the locks it began."""
    keys = [data.lock_key, _account_key(data)]
    locks = [lockout.record_failure(svc.sessions, key, now) for key in keys if key]
    return [lock for lock in locks if lock is not None]


def released(svc: Services, data: RecoveryData) -> None:
    """An attempt that got no answer (the service failed) counts on neither."""
    for key in (data.lock_key, _account_key(data)):
        if key:
            lockout.release_attempt(svc.sessions, key)


def succeeded(svc: Services, data: RecoveryData, now: datetime) -> None:
    for key in (data.lock_key, _account_key(data)):
        if key:
            lockout.record_success(svc.sessions, key, now)
