"""A recovery lock tells nothing about who exists or which email is whose: it is keyed on
what was typed (as the lookup reads it), and the account's own counter never shows before
the proof."""

from __future__ import annotations

import secrets

from flask import Flask

from provider.guards import lockout
from tests.support.flow_client import StudentDetails
from tests.support.inbox import Inbox
from tests.support.recovery import RecoveryClient

WRONG = "That code is not right"


def _answers(app: Flask, inbox: Inbox, user_id: str, email: str) -> tuple[int, int]:
    """Lock what typing `user_id` counts on, then: (a wrong code in a flow typed by the
    email, a code in a flow typed by the user ID with a suffix)."""
    locking = RecoveryClient(app, inbox)
    locking.start(user_id, "email")
    for _ in range(lockout.MAX_FAILURES):
        assert locking.code(f"{secrets.randbelow(10**6):06d}").status_code in (400, 302)
    by_email = RecoveryClient(app, inbox)
    by_email.start(email, "email")
    other_way = by_email.code("000000")
    by_suffix = RecoveryClient(app, inbox)
    by_suffix.start(user_id + "x", "phone")
    suffixed = by_suffix.code("000000")
    assert WRONG in other_way.get_data(as_text=True) or other_way.status_code != 400
    return other_way.status_code, suffixed.status_code


def test_a_lock_by_user_id_shows_alike_for_an_account_and_for_nobody(
    app: Flask, inbox: Inbox, active_student: StudentDetails
) -> None:
    nobody = f"zq{secrets.token_hex(3)[:5]}"
    real = _answers(app, inbox, active_student.user_id, active_student.email)
    unknown = _answers(app, inbox, nobody, f"{nobody}@example.edu")
    # Typed another way the account is not locked (400, a wrong code), for both; the same
    # user ID with a suffix is the same typing to the lookup, so locked (429), for both.
    assert real == unknown == (400, 429)
