"""The decoy code record behind a recovery start that sent nothing: it answers like a real
code (wrong tries, expiry, the end of tries) and no typed code ever matches it; armed
again (a resend that sent nothing), it keeps a live code the student may hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from provider.guards import verification as v

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
FLOW = "f" * 64
PHONE = "+85362345678"


def _contact(hasher) -> str:
    return v.contact_hash(hasher, "phone", PHONE)


def _arm(sessions, hasher, now=T0) -> None:
    v.arm_decoy(sessions, hasher, flow_key=FLOW, channel="phone", contact=_contact(hasher), now=now)


def _issue(sessions, hasher, now=T0) -> str:
    code, _ = v.issue_hashed(
        sessions,
        hasher,
        flow_key=FLOW,
        student="s000001",
        channel="phone",
        contact=_contact(hasher),
        now=now,
        caps=v.SendCaps(student=()),
    )
    return code.code


def _check(sessions, hasher, code: str, now=T0) -> None:
    v.check_hashed(
        sessions,
        hasher,
        flow_key=FLOW,
        channel="phone",
        contact=_contact(hasher),
        code=code,
        now=now,
    )


def test_a_decoy_answers_like_a_code_nobody_holds(sessions, hasher) -> None:
    _arm(sessions, hasher)
    for remaining, typed in zip(
        (4, 3, 2, 1), ("000000", "123456", "999999", "decoy:"), strict=True
    ):
        with pytest.raises(v.CodeWrong) as caught:
            _check(sessions, hasher, typed)
        assert caught.value.remaining == remaining
    with pytest.raises(v.TooManyWrong):
        _check(sessions, hasher, "654321")
    with pytest.raises(v.TooManyWrong):  # its tries are over, as a real code's would be
        _check(sessions, hasher, "000000")


def test_a_decoy_expires_like_a_code(sessions, hasher) -> None:
    _arm(sessions, hasher)
    with pytest.raises(v.CodeExpired):
        _check(sessions, hasher, "000000", now=T0 + v.CODE_TTL)


def test_armed_again_it_restarts_the_expiry_and_keeps_the_tries(sessions, hasher) -> None:
    _arm(sessions, hasher)
    for _ in range(3):
        with pytest.raises(v.CodeWrong):
            _check(sessions, hasher, "000000")
    later = T0 + timedelta(minutes=9)
    _arm(sessions, hasher, now=later)
    with pytest.raises(v.CodeWrong) as caught:  # not expired at T0 + 10 min, tries kept
        _check(sessions, hasher, "000000", now=T0 + v.CODE_TTL)
    assert caught.value.remaining == 1


def test_armed_over_a_live_code_it_keeps_that_code(sessions, hasher) -> None:
    """A resend refused silently (a throttle) must not take away the code the student
    was sent; the code lasts as long as a new one would have."""
    code = _issue(sessions, hasher)
    later = T0 + timedelta(seconds=30)
    _arm(sessions, hasher, now=later)
    _check(sessions, hasher, code, now=later + v.CODE_TTL - timedelta(seconds=1))


def test_armed_over_an_expired_code_it_leaves_a_decoy(sessions, hasher) -> None:
    code = _issue(sessions, hasher)
    later = T0 + v.CODE_TTL
    _arm(sessions, hasher, now=later)
    with pytest.raises(v.CodeWrong):  # expiry restarted, and the old code is no more
        _check(sessions, hasher, code, now=later + timedelta(seconds=1))
