"""The recovery code (issue 15, point 3): 6 digits, single use, 10 minutes, bound to its
flow and its contact, 5 wrong tries that a resend does not reset; wrong tries on the
account's own counter, which no new flow resets, lock the account's recovery (429 and
Retry-After), alike for an ID nobody holds.

Each test drives the real server (werkzeug) with browsers of their own, and makes time
pass by moving the stored times (a code's expiry, the sends the throttles count).
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import update

from provider.guards import lockout, verification
from provider.services import Services
from provider.storage.models import Flow
from tests.support import recovery_accounts as accounts
from tests.support.inbox import Inbox
from tests.support.recovery import recovery_engine
from tests.support.recovery_accounts import Typed
from tests.support.recovery_http import Answer, RecoveryBrowser

EXPIRED = "That code has expired. Ask for a new one."
ENDED = "Too many wrong codes. Start again later, or ask the IT help desk."
LOCKED = "Too many wrong tries for this account."


def tries_left(n: int) -> str:
    return f"That code is not right. You have {n} {'try' if n == 1 else 'tries'} left."


def _started(live_url: str, account: str, channel: str) -> RecoveryBrowser:
    browser = RecoveryBrowser(live_url)
    answer = browser.start(account, channel)
    assert (answer.status, answer.location) == (302, "/recover/code"), answer.body[:300]
    assert browser.follow(answer).status == 200  # the code page, and its form's token
    return browser


def _proven(answer: Answer) -> bool:
    return (answer.status, answer.location) == (302, "/recover/choose")


def _wrong_code(*right: str) -> str:
    while True:
        code = f"{secrets.randbelow(10**6):06d}"
        if code not in right:
            return code


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def test_a_code_is_six_digits_and_lasts_ten_minutes(
    app: Flask, inbox: Inbox, services: Services, live_url: str, recoverable: Typed
) -> None:
    by_email = _started(live_url, recoverable.user_id, "email")
    by_text = _started(live_url, recoverable.user_id, "phone")
    assert recoverable.phone is not None
    for code, message in (
        (inbox.email_code(recoverable.email), inbox.mails_to(recoverable.email)[-1].text),
        (inbox.sms_code(recoverable.phone), inbox.texts_to(recoverable.phone)[-1]),
    ):
        assert re.fullmatch(r"\d{6}", code)
        assert re.findall(r"\d{6,}", message) == [code]  # no longer number around it
    assert len(inbox.mails_to(recoverable.email)) == 1
    for browser in (by_email, by_text):
        record = accounts.code_record(services, accounts.flow_key(app, browser.flow_id))
        assert record.code_expires_at is not None
        lasts = _aware(record.code_expires_at) - datetime.now(UTC)
        assert timedelta(minutes=9) < lasts <= timedelta(minutes=10)


def test_a_proven_code_cannot_be_used_again(
    app: Flask, inbox: Inbox, services: Services, live_url: str, recoverable: Typed
) -> None:
    browser = _started(live_url, recoverable.user_id, "email")
    code = inbox.email_code(recoverable.email)
    assert _proven(browser.code(code))
    # A second submit of the same code that loaded the flow before the first moved it on
    # (a double click, a replayed request): the flow is put back at the code step.
    engine = recovery_engine(app)
    with services.sessions.begin() as db:
        db.execute(
            update(Flow)
            .where(Flow.id_hash == accounts.flow_key(app, browser.flow_id))
            .values(step="code")
        )
    assert engine.load_or_start(browser.flow_id).step == "code"
    again = browser.code(code)
    assert again.status == 400 and EXPIRED in again.body
    assert engine.load_or_start(browser.flow_id).step == "code"


def test_a_code_expires_after_ten_minutes(
    app: Flask, inbox: Inbox, services: Services, live_url: str, recoverable: Typed
) -> None:
    late = _started(live_url, recoverable.user_id, "email")
    late_code = inbox.email_code(recoverable.email)
    accounts.move_code_expiry(services, accounts.flow_key(app, late.flow_id), timedelta(minutes=10))
    expired = late.code(late_code)
    assert expired.status == 400 and EXPIRED in expired.body

    # Another flow (by email this time), its code typed 9½ minutes after it was sent.
    accounts.age_sends(services, recoverable.user_id, timedelta(seconds=61))
    in_time = _started(live_url, recoverable.email, "email")
    code = inbox.email_code(recoverable.email, after=1)
    accounts.move_code_expiry(
        services, accounts.flow_key(app, in_time.flow_id), timedelta(minutes=9, seconds=30)
    )
    assert _proven(in_time.code(code))


def _unlike(
    other: str,
    code: str,
    browser: RecoveryBrowser,
    channel: str,
    services: Services,
    who: Typed,
    inbox: Inbox,
) -> str:
    """`code`, or (one time in a million: two random codes alike) a new one for
    `browser`'s flow, until it differs from `other`: a crossed code must be a wrong one."""
    while code == other:
        accounts.age_sends(services, who.user_id, timedelta(seconds=61))
        by_text = channel == "phone"
        before = len(inbox.texts_to(who.phone or "")) if by_text else len(inbox.mails_to(who.email))
        assert browser.resend().status == 200
        if by_text:
            code = inbox.sms_code(who.phone or "", after=before)
        else:
            code = inbox.email_code(who.email, after=before)
    return code


def test_a_code_works_only_in_the_flow_it_was_sent_for(
    inbox: Inbox, services: Services, live_url: str, recoverable: Typed
) -> None:
    """The same student in two browsers (by user ID in one, by email in the other), a
    code to the same address for each: each code only in its own flow."""
    first = _started(live_url, recoverable.user_id, "email")
    first_code = inbox.email_code(recoverable.email)
    accounts.age_sends(services, recoverable.user_id, timedelta(seconds=61))
    second = _started(live_url, recoverable.email, "email")
    second_code = inbox.email_code(recoverable.email, after=1)
    second_code = _unlike(first_code, second_code, second, "email", services, recoverable, inbox)

    crossed = second.code(first_code)
    assert crossed.status == 400 and tries_left(4) in crossed.body
    crossed = first.code(second_code)
    assert crossed.status == 400 and tries_left(4) in crossed.body
    assert _proven(first.code(first_code))
    assert _proven(second.code(second_code))


def test_an_email_code_does_not_prove_the_phone(
    inbox: Inbox, services: Services, live_url: str, recoverable: Typed
) -> None:
    assert recoverable.phone is not None
    by_email = _started(live_url, recoverable.user_id, "email")
    email_code = inbox.email_code(recoverable.email)
    by_text = _started(live_url, recoverable.user_id, "phone")
    text_code = inbox.sms_code(recoverable.phone)
    text_code = _unlike(email_code, text_code, by_text, "phone", services, recoverable, inbox)

    refused = by_text.code(email_code)
    assert refused.status == 400 and tries_left(4) in refused.body
    refused = by_email.code(text_code)
    assert refused.status == 400 and tries_left(4) in refused.body
    assert _proven(by_text.code(text_code))


@pytest.mark.usefixtures("generous_budgets")
def test_five_wrong_tries_end_the_code_even_across_a_resend(
    app: Flask, inbox: Inbox, services: Services, live_url: str, recoverable: Typed
) -> None:
    browser = _started(live_url, recoverable.user_id, "email")
    first = inbox.email_code(recoverable.email)
    for left in (4, 3, 2):
        answer = browser.code(_wrong_code(first))
        assert answer.status == 400 and tries_left(left) in answer.body

    accounts.age_sends(services, recoverable.user_id, timedelta(seconds=61))
    assert browser.resend().status == 200
    second = inbox.email_code(recoverable.email, after=1)  # a new code was sent
    answer = browser.code(_wrong_code(first, second))
    assert answer.status == 400 and tries_left(1) in answer.body
    answer = browser.code(_wrong_code(first, second))
    assert answer.status == 400 and ENDED in answer.body

    # Even with the account's own lock lifted (as the help desk can), this flow's code is
    # over: the right code, resent or not, proves nothing here now.
    lockout.clear(services.sessions, lockout.recovery_key(recoverable.user_id))
    answer = browser.code(second)
    assert answer.status == 400 and ENDED in answer.body
    assert browser.resend().status == 200
    accounts.deliveries_settled()
    assert len(inbox.mails_to(recoverable.email)) == 2  # none for a code that is over
    record = accounts.code_record(services, accounts.flow_key(app, browser.flow_id))
    assert record.failures == verification.MAX_WRONG


def _blank_retry_after(answer: Answer) -> Answer:
    headers = [(k, "-" if k.lower() == "retry-after" else v) for k, v in answer.headers]
    return Answer(answer.status, answer.location, headers, answer.cookies_set, answer.body, 0)


def _lock_across_flows(
    live_url: str, inbox: Inbox, services: Services, account: Typed, known: bool
) -> list[Answer]:
    """Three wrong codes in one flow, two in a new one, then a third flow: its answers."""
    answers = []
    first = _started(live_url, account.user_id, "email")
    right = inbox.email_code(account.email) if known else ""
    answers += [first.code(_wrong_code(right)) for _ in range(3)]
    second = _started(live_url, account.user_id, "phone")
    right = inbox.sms_code(account.phone or "") if known else ""
    answers += [second.code(_wrong_code(right)) for _ in range(2)]
    if known:  # the right code for the third flow, which a lock must refuse all the same
        accounts.age_sends(services, account.user_id, timedelta(seconds=61))
    third = _started(live_url, account.user_id, "email")
    code = inbox.email_code(account.email, after=1) if known else _wrong_code()
    answers.append(third.code(code))
    return answers


@pytest.mark.usefixtures("generous_budgets")
def test_wrong_tries_in_new_flows_add_up_and_lock_recovery_alike_for_an_unknown_id(
    inbox: Inbox, services: Services, live_url: str, recoverable: Typed
) -> None:
    known = _lock_across_flows(live_url, inbox, services, recoverable, known=True)
    ghost = accounts.unknown()
    unknown = _lock_across_flows(live_url, inbox, services, ghost, known=False)

    assert [
        (a.status, tries_left(n) in a.body) for a, n in zip(known, (4, 3, 2, 4, 3), strict=False)
    ] == [(400, True)] * 5
    locked = known[-1]
    assert locked.status == 429 and LOCKED in locked.body
    retry_after = int(dict(locked.headers)["Retry-After"])
    assert 0 < retry_after <= lockout.BASE_LOCK.total_seconds()
    assert "Try again in 15 minutes" in locked.body
    for n, (mine, theirs) in enumerate(zip(known, unknown, strict=True)):
        differs = _blank_retry_after(mine).same_as(_blank_retry_after(theirs))
        assert not differs, f"answer {n + 1} differs for an unknown ID in {differs}"
    actions = [action for action, _ in accounts.audit_of(services, recoverable.user_id)]
    assert actions.count("recovery.code_failed") == 5
    assert actions.count("recovery.locked") == 1


@pytest.mark.usefixtures("generous_budgets")
def test_a_resend_that_sends_nothing_keeps_the_code_the_student_has(
    inbox: Inbox, live_url: str, recoverable: Typed
) -> None:
    """ "Send a new code" within the minute a contact must wait between codes sends
    nothing (silently: saying so would tell the account exists); the code the student
    already has must still work, not be replaced by a decoy nobody holds."""
    browser = _started(live_url, recoverable.user_id, "email")
    code = inbox.email_code(recoverable.email)
    assert browser.resend().status == 200
    accounts.deliveries_settled()
    assert len(inbox.mails_to(recoverable.email)) == 1  # nothing more was sent
    assert _proven(browser.code(code))
