from datetime import UTC, datetime, timedelta

import pytest

from provider.flows import verification as v

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
FLOW = "f" * 64
OTHER_FLOW = "o" * 64


def _issue(sessions, hasher, now=T0, flow=FLOW, value="+85362345678"):
    code, _ = v.issue(sessions, hasher, flow_key=flow, channel="phone", value=value, now=now)
    return code.code


def _check(sessions, hasher, code, now=T0, flow=FLOW, value="+85362345678"):
    v.check(sessions, hasher, flow_key=flow, channel="phone", value=value, code=code, now=now)


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def test_right_code_once(sessions, hasher) -> None:
    code = _issue(sessions, hasher)
    assert len(code) == 6 and code.isdigit()
    _check(sessions, hasher, code)
    assert v.is_verified(sessions, hasher, FLOW, "phone", "+85362345678")
    with pytest.raises(v.CodeExpired):  # single use
        _check(sessions, hasher, code)


def test_code_expires(sessions, hasher) -> None:
    code = _issue(sessions, hasher)
    with pytest.raises(v.CodeExpired):
        _check(sessions, hasher, code, now=T0 + v.CODE_TTL)


def test_five_wrong_tries_and_a_resend_does_not_reset_them(sessions, hasher) -> None:
    code = _issue(sessions, hasher)
    for remaining in (4, 3, 2):
        with pytest.raises(v.CodeWrong) as caught:
            _check(sessions, hasher, _wrong(code))
        assert caught.value.remaining == remaining
    code = _issue(sessions, hasher, now=T0 + timedelta(seconds=61))  # resend
    with pytest.raises(v.CodeWrong) as caught:
        _check(sessions, hasher, _wrong(code), now=T0 + timedelta(seconds=62))
    assert caught.value.remaining == 1
    with pytest.raises(v.TooManyWrong):
        _check(sessions, hasher, _wrong(code), now=T0 + timedelta(seconds=63))
    with pytest.raises(v.TooManyWrong):  # even the right one, now
        _check(sessions, hasher, code, now=T0 + timedelta(seconds=64))
    with pytest.raises(v.TooManyWrong):  # and no new code for it in this flow
        _issue(sessions, hasher, now=T0 + timedelta(seconds=200))


def test_code_is_bound_to_its_flow_and_contact(sessions, hasher) -> None:
    code = _issue(sessions, hasher)
    _issue(sessions, hasher, flow=OTHER_FLOW, value="+85366666666")
    with pytest.raises(v.CodeWrong):
        _check(sessions, hasher, code, flow=OTHER_FLOW, value="+85366666666")
    with pytest.raises(v.CodeExpired):  # no code was ever sent to that contact in this flow
        _check(sessions, hasher, code, value="+85366666666")


def test_throttles_per_contact_and_per_flow(sessions, hasher) -> None:
    _issue(sessions, hasher)
    with pytest.raises(v.Throttled) as caught:
        _issue(sessions, hasher, now=T0 + timedelta(seconds=20))
    assert caught.value.seconds == 40
    assert (
        v.wait_before_resend(sessions, hasher, "phone", "+85362345678", T0 + timedelta(seconds=20))
        == 40
    )
    for minute in range(1, 5):
        _issue(sessions, hasher, now=T0 + timedelta(minutes=minute))
    with pytest.raises(v.Throttled) as caught:  # 5 per hour per contact
        _issue(sessions, hasher, now=T0 + timedelta(minutes=6))
    assert caught.value.seconds == 54 * 60
    # Per contact across flows: another flow cannot get around it.
    with pytest.raises(v.Throttled):
        _issue(sessions, hasher, flow=OTHER_FLOW, now=T0 + timedelta(minutes=7))
    # Per flow: 10 sends an hour whatever the contacts.
    for n in range(10):
        _issue(
            sessions, hasher, flow="x" * 64, value=f"+8536600000{n}", now=T0 + timedelta(minutes=n)
        )
    with pytest.raises(v.Throttled):
        _issue(
            sessions, hasher, flow="x" * 64, value="+85366000099", now=T0 + timedelta(minutes=11)
        )


def test_a_failed_delivery_costs_nothing(sessions, hasher) -> None:
    _, send_id = v.issue(sessions, hasher, flow_key=FLOW, channel="email", value="a@b.edu", now=T0)
    v.forget_send(sessions, send_id)
    v.issue(
        sessions,
        hasher,
        flow_key=FLOW,
        channel="email",
        value="a@b.edu",
        now=T0 + timedelta(seconds=1),
    )  # not throttled
