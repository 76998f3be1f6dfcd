from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from provider.guards import send_budget
from provider.guards import verification as v
from provider.storage.models import AuditEvent, ContactSend, ContactVerification, SendDay

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
FLOW = "f" * 64
OTHER_FLOW = "o" * 64


# The other throttles' tests: no per-student cap in the way.
UNCAPPED = v.SendCaps(student=())


def _issue(sessions, hasher, now=T0, flow=FLOW, value="+85362345678"):
    code, _ = v.issue(
        sessions,
        hasher,
        flow_key=flow,
        student="s000001",
        channel="phone",
        value=value,
        now=now,
        caps=UNCAPPED,
    )
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
    def send(now: datetime) -> v.Send:
        return v.issue(
            sessions,
            hasher,
            flow_key=FLOW,
            student="s000001",
            channel="email",
            value="a@b.edu",
            now=now,
            caps=v.SendCaps(student=((1, v.DAY),)),
        )[1]

    v.forget_send(sessions, send(T0))
    send(T0 + timedelta(seconds=1))  # throttled neither per contact nor per student


# -- the per-student cap and the daily text budget ---------------------------------------------

STUDENT = "s123456"


def _send(
    sessions,
    hasher,
    n: int,
    now: datetime,
    caps: v.SendCaps,
    *,
    student: str = STUDENT,
    channel: str = "email",
) -> v.Send:
    """A send in a flow of its own to a contact of its own: only the student's cap and
    the text budget can refuse it."""
    value = f"{student}.{n}@example.edu" if channel == "email" else f"+8536600{n:04d}"
    return v.issue(
        sessions,
        hasher,
        flow_key=f"flow-{student}-{n}",
        student=student,
        channel=channel,
        value=value,
        now=now,
        caps=caps,
    )[1]


def _refusals(sessions) -> list[tuple[str, str | None, dict]]:
    with sessions() as session:
        rows = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "contacts.send_refused")
            .order_by(AuditEvent.id)
        )
        return [(e.actor, e.subject, e.detail) for e in rows]


def _day(sessions, day: date) -> tuple[int, int, int]:
    with sessions() as session:
        row = session.get(SendDay, day)
        return (row.sms_sent, row.refused_student_cap, row.refused_sms_budget) if row else (0, 0, 0)


def test_the_student_cap_spans_flows_and_contacts(sessions, hasher) -> None:
    """A new flow (identifying again with the same code) and a new contact buy nothing:
    the student's sends are counted together."""
    caps = v.SendCaps(student=((3, v.HOUR), (5, v.DAY)))
    minute = timedelta(minutes=1)
    for n in range(3):
        _send(sessions, hasher, n, T0 + n * minute, caps)
    with pytest.raises(v.StudentCapped) as caught:
        _send(sessions, hasher, 3, T0 + 10 * minute, caps)
    assert caught.value.seconds == 50 * 60  # until the first send leaves the hour
    with sessions() as session:  # nothing was written for the refused send
        assert session.scalar(select(func.count()).select_from(ContactSend)) == 3
        assert session.scalar(select(func.count()).select_from(ContactVerification)) == 3
    _send(sessions, hasher, 0, T0 + 10 * minute, caps, student="s654321")  # others unaffected
    # After the hour the day's cap is what is left: 5 a day.
    _send(sessions, hasher, 4, T0 + 61 * minute, caps)
    _send(sessions, hasher, 5, T0 + 62 * minute, caps)
    with pytest.raises(v.StudentCapped) as caught:
        _send(sessions, hasher, 6, T0 + 70 * minute, caps)
    assert caught.value.seconds == (v.DAY - 70 * minute).total_seconds()
    assert isinstance(caught.value, v.Throttled)  # answered like every throttle
    # Audited under the student with the reason and the channel, never the contact; counted.
    assert (
        _refusals(sessions)
        == [
            ("student", STUDENT, {"reason": "student_cap", "channel": "email"}),
        ]
        * 2
    )
    assert _day(sessions, T0.date()) == (0, 2, 0)


def test_a_failed_delivery_gives_back_the_students_send(sessions, hasher) -> None:
    caps = v.SendCaps(student=((1, v.DAY),))
    v.forget_send(sessions, _send(sessions, hasher, 0, T0, caps))
    _send(sessions, hasher, 1, T0, caps)
    with pytest.raises(v.StudentCapped):
        _send(sessions, hasher, 2, T0, caps)


def test_the_text_budget_refuses_the_next_text_and_email_still_works(sessions, hasher) -> None:
    caps = v.SendCaps(student=(), sms_budget=2)
    first = _send(sessions, hasher, 0, T0, caps, channel="phone")
    _send(sessions, hasher, 1, T0, caps, channel="phone")
    assert first.sms_day == T0.date()
    with pytest.raises(v.SmsBudgetSpent) as spent:
        _send(sessions, hasher, 2, T0, caps, channel="phone")
    assert spent.value.seconds == 12 * 3600  # T0 is noon UTC: the budget returns at midnight
    with sessions() as session:  # the refused text changed nothing
        assert session.scalar(select(func.count()).select_from(ContactSend)) == 2
    assert _send(sessions, hasher, 3, T0, caps).sms_day is None  # email takes no text
    # A text that was not delivered gives its unit back, once.
    v.forget_send(sessions, first)
    v.forget_send(sessions, first)
    _send(sessions, hasher, 4, T0, caps, channel="phone")
    with pytest.raises(v.SmsBudgetSpent):
        _send(sessions, hasher, 5, T0, caps, channel="phone")
    assert _day(sessions, T0.date()) == (2, 0, 2)
    assert (
        _refusals(sessions)
        == [
            ("student", STUDENT, {"reason": "sms_budget", "channel": "phone"}),
        ]
        * 2
    )
    # The next UTC day has a budget of its own (T0 + 12 h is 00:00 UTC).
    _send(sessions, hasher, 6, T0 + timedelta(hours=12), caps, channel="phone")
    assert _day(sessions, date(2026, 11, 27)) == (1, 0, 0)


def test_a_budget_of_zero_sends_no_text(sessions, hasher) -> None:
    caps = v.SendCaps(student=(), sms_budget=0)
    with pytest.raises(v.SmsBudgetSpent) as spent:
        _send(sessions, hasher, 0, T0, caps, channel="phone")
    assert spent.value.seconds is None  # not a wait: texts are off
    _send(sessions, hasher, 1, T0, caps)


def test_notices_are_counted_but_never_refused(sessions) -> None:
    with sessions.begin() as session:
        assert send_budget.reserve(session, T0, 1) == T0.date()
    send_budget.count_text(sessions, T0)  # a notice past the budget still counts
    with sessions.begin() as session:
        assert send_budget.reserve(session, T0, 1) is None
        assert send_budget.sent_on(session, T0.date()) == 2


def test_caps_come_from_the_settings_strings() -> None:
    caps = v.SendCaps.from_settings("6 per hour;10 per day", 2000)
    assert caps == v.SendCaps()
    assert caps.student == ((6, v.HOUR), (10, v.DAY))
    assert v.SendCaps.from_settings("3 per 10 minutes", 0).student == ((3, timedelta(minutes=10)),)


# -- boundaries, windows and what a right code gives back ----------------------------------


def test_a_new_code_lasts_code_ttl_and_the_row_starts_clean(sessions, hasher) -> None:
    code, _ = v.issue(
        sessions,
        hasher,
        flow_key=FLOW,
        student="s000001",
        channel="email",
        value="mei@example.edu",
        now=T0,
        caps=UNCAPPED,
    )
    assert code.expires_at == T0 + v.CODE_TTL
    with sessions() as session:
        row = session.scalars(select(ContactVerification)).one()
        assert (row.failures, row.created_at, row.code_expires_at) == (0, T0, T0 + v.CODE_TTL)


def test_codes_span_the_whole_six_digit_space(sessions, hasher) -> None:
    codes = [
        _issue(sessions, hasher, flow=f"flow-{n}", value=f"+8536611{n:04d}") for n in range(20)
    ]
    assert all(len(c) == 6 and c.isdigit() for c in codes)
    # Twenty codes all below 1000 by chance: one run in 10^60.
    assert max(int(c) for c in codes) >= 1000


def test_a_code_typed_with_spaces_is_accepted(sessions, hasher) -> None:
    code = _issue(sessions, hasher)
    _check(sessions, hasher, f" {code[:3]} {code[3:]} ")
    assert v.is_verified(sessions, hasher, FLOW, "phone", "+85362345678")


def test_only_a_checked_code_verifies(sessions, hasher) -> None:
    assert not v.is_verified(sessions, hasher, FLOW, "phone", "+85362345678")  # never sent
    _issue(sessions, hasher)
    assert not v.is_verified(sessions, hasher, FLOW, "phone", "+85362345678")  # not typed


def test_a_right_code_gives_back_its_try_and_only_it(sessions, hasher) -> None:
    code = _issue(sessions, hasher)
    for remaining in (4, 3):
        with pytest.raises(v.CodeWrong) as caught:
            _check(sessions, hasher, _wrong(code))
        assert caught.value.remaining == remaining
    _check(sessions, hasher, code)
    # A new code for the same contact in the same flow keeps the two wrong tries.
    t = T0 + timedelta(seconds=61)
    code = _issue(sessions, hasher, now=t)
    for remaining in (2, 1):
        with pytest.raises(v.CodeWrong) as caught:
            _check(sessions, hasher, _wrong(code), now=t)
        assert caught.value.remaining == remaining
    with pytest.raises(v.TooManyWrong):
        _check(sessions, hasher, _wrong(code), now=t)


def test_contacts_differ_by_more_than_case(sessions, hasher) -> None:
    def send(flow: str, value: str) -> None:
        v.issue(
            sessions,
            hasher,
            flow_key=flow,
            student="s000001",
            channel="email",
            value=value,
            now=T0,
            caps=UNCAPPED,
        )

    send("flow-1", "Mei.Ho@Example.edu")
    with pytest.raises(v.Throttled):  # the same address in other letters' case
        send("flow-2", "mei.ho@example.edu")
    send("flow-3", "straße@example.edu")
    send("flow-4", "STRASSE@example.edu")  # another address, though upper case folds them


def test_a_throttle_waits_at_least_a_second(sessions, hasher) -> None:
    _issue(sessions, hasher)
    with pytest.raises(v.Throttled) as caught:
        _issue(sessions, hasher, now=T0 + timedelta(seconds=59, microseconds=500_000))
    assert caught.value.seconds == 1
    one_second_left = T0 + timedelta(seconds=59)
    assert v.wait_before_resend(sessions, hasher, "phone", "+85362345678", one_second_left) == 1
    assert v.wait_before_resend(sessions, hasher, "phone", "+85362345678", T0 + v.CONTACT_GAP) == 0
    assert v.wait_before_resend(sessions, hasher, "phone", "+85366666666", T0) == 0  # never sent


def test_the_contact_hour_rolls(sessions, hasher) -> None:
    for minute in range(5):
        _issue(sessions, hasher, now=T0 + timedelta(minutes=minute))
    # The first send leaves the hour at T0 + 1 h exactly: one more fits then, not before.
    with pytest.raises(v.Throttled) as caught:
        _issue(sessions, hasher, now=T0 + timedelta(minutes=59))
    assert caught.value.seconds == 60
    _issue(sessions, hasher, now=T0 + v.HOUR)


def test_the_flow_hour_rolls_and_says_how_long(sessions, hasher) -> None:
    for n in range(10):
        _issue(sessions, hasher, flow="x" * 64, value=f"+8536600{n:04d}", now=T0 + n * MINUTE)
    with pytest.raises(v.Throttled) as caught:
        _issue(sessions, hasher, flow="x" * 64, value="+85366000099", now=T0 + 11 * MINUTE)
    assert caught.value.seconds == 49 * 60  # until the flow's first send leaves the hour
    _issue(sessions, hasher, flow="x" * 64, value="+85366000099", now=T0 + v.HOUR)


@pytest.mark.parametrize(
    "caps",
    [((1, v.HOUR),), ((1, v.HOUR), (10, v.DAY))],
    ids=["the-only-window", "inside-a-longer-one"],
)
def test_the_student_cap_window_rolls_at_its_very_end(sessions, hasher, caps) -> None:
    caps = v.SendCaps(student=caps)
    _send(sessions, hasher, 0, T0, caps)
    with pytest.raises(v.StudentCapped):
        _send(sessions, hasher, 1, T0 + v.HOUR - timedelta(seconds=1), caps)
    _send(sessions, hasher, 2, T0 + v.HOUR, caps)


def test_the_student_cap_waits_for_the_oldest_send_whatever_the_write_order(
    sessions, hasher
) -> None:
    """Parallel requests may write their sends out of time order: the wait still runs
    from the oldest one."""
    caps = v.SendCaps(student=((2, v.HOUR),))
    _send(sessions, hasher, 0, T0 + 10 * MINUTE, caps)
    _send(sessions, hasher, 1, T0 + 5 * MINUTE, caps)
    with pytest.raises(v.StudentCapped) as caught:
        _send(sessions, hasher, 2, T0 + 20 * MINUTE, caps)
    assert caught.value.seconds == 45 * 60


def test_a_spent_text_budget_says_when_it_returns(sessions, hasher) -> None:
    caps = v.SendCaps(student=(), sms_budget=1)
    last_second = datetime(2026, 11, 26, 23, 59, 59, 500_000, tzinfo=UTC)
    _send(sessions, hasher, 0, last_second, caps, channel="phone")
    with pytest.raises(v.SmsBudgetSpent) as spent:
        _send(sessions, hasher, 1, last_second, caps, channel="phone")
    assert spent.value.seconds == 1  # half a second to midnight: at least a second


def test_caps_from_settings_keep_the_text_budget() -> None:
    assert v.SendCaps.from_settings("6 per hour", 5).sms_budget == 5
