"""Recovery's throttles (issue 15, point 3): per account (UMPASS_RECOVERY_ACCOUNT_LIMIT), per
account and channel (UMPASS_RECOVERY_CONTACT_LIMIT), per address (the start's identify
limit, the resend's send limit). Each answers 429 with Retry-After before any gateway is
called: no Keycloak lookup, nothing sent, nothing audited; the per-account ones alike for
an ID nobody holds. A new flow resets none of them. The caps a code send meets after the
lookup (the student's sends, shared with activation; the day's text messages) refuse
silently: the same answer as for anyone else, nothing sent, and audited.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import select

from provider.guards.send_budget import day_of
from provider.services import Services
from provider.services import services as app_services
from provider.storage.models import SendDay
from tests.support import recovery_accounts as accounts
from tests.support.contacts_page import tune
from tests.support.inbox import Inbox
from tests.support.recovery_accounts import Typed
from tests.support.recovery_http import Answer, RecoveryBrowser

TOO_MANY_CODES = re.compile(r"Too many codes asked for this account\. Try again in \d+ minutes?\.")
FROM_YOUR_NETWORK = "Too many tries from your network. Wait a minute and try again."


@pytest.fixture
def lookups(app: Flask, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every account lookup the service makes in Keycloak from here on (the real calls,
    recorded by name)."""
    gateway = app_services(app).keycloak
    calls: list[str] = []
    for name in ("find_user", "find_user_by_email", "get_user"):
        real = getattr(gateway, name)

        def recorded(*args: object, _real=real, _name=name, **kwargs: object) -> object:
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(gateway, name, recorded)
    return calls


def _start(live_url: str, typed: str, channel: str) -> tuple[RecoveryBrowser, Answer]:
    browser = RecoveryBrowser(live_url)
    return browser, browser.start(typed, channel)


def _blank_wait(answer: Answer) -> Answer:
    """The answer without how long to wait (each budget's window began at its first use)."""
    headers = [(k, "-" if k.lower() == "retry-after" else v) for k, v in answer.headers]
    body = re.sub(r"Try again in \d+ minutes?", "Try again in -", answer.body)
    return Answer(answer.status, answer.location, headers, answer.cookies_set, body, 0)


def _retry_after(answer: Answer) -> int:
    return int(dict(answer.headers)["Retry-After"])


def _so_far(inbox: Inbox, services: Services, account: Typed) -> tuple[int, int]:
    """Messages delivered to the account's contacts and audit events about it so far."""
    accounts.deliveries_settled()
    return accounts.messages_to(inbox, account), len(accounts.audit_of(services, account.user_id))


def _nothing_more(
    inbox: Inbox, services: Services, account: Typed, messages: int, audited: int
) -> None:
    """Nothing was sent to the account and nothing audited about it since then."""
    accounts.deliveries_settled()
    assert accounts.messages_to(inbox, account) == messages
    assert len(accounts.audit_of(services, account.user_id)) == audited


def test_the_account_budget_refuses_before_any_lookup_alike_for_an_unknown_id(
    app: Flask,
    inbox: Inbox,
    services: Services,
    live_url: str,
    recoverable: Typed,
    lookups: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Five starts an hour for what was typed, each in a new flow; the sixth is refused."""
    monkeypatch.setitem(app.config, "UMPASS_RECOVERY_CONTACT_LIMIT", "1000 per hour")
    refused: dict[str, Answer] = {}
    for account in (recoverable, accounts.unknown()):
        for n in range(5):
            _, answer = _start(live_url, account.user_id, ("email", "phone")[n % 2])
            assert answer.status == 302
        # Time enough for a code to go out again, were the start let through.
        accounts.age_sends(services, account.user_id, timedelta(days=2))
        messages, audited = _so_far(inbox, services, account)
        lookups.clear()
        _, refused[account.kind] = _start(live_url, account.user_id, "email")
        assert lookups == []
        _nothing_more(inbox, services, account, messages, audited)

    answer = refused["active"]
    assert answer.status == 429 and TOO_MANY_CODES.search(answer.body)
    assert 0 < _retry_after(answer) <= 3600
    assert 0 < _retry_after(refused["unknown"]) <= 3600
    differs = _blank_wait(answer).same_as(_blank_wait(refused["unknown"]))
    assert not differs, f"an unknown ID's refusal differs in {differs}"


def test_the_account_and_channel_budget_refuses_before_any_lookup_alike_for_an_unknown_id(
    inbox: Inbox, services: Services, live_url: str, recoverable: Typed, lookups: list[str]
) -> None:
    """One start a minute for what was typed on one channel, whichever flow asks (a new
    one, or "Send a new code" in the first); the other channel has its own."""
    refused: dict[str, list[Answer]] = {}
    for account in (recoverable, accounts.unknown()):
        first, answer = _start(live_url, account.user_id, "email")
        assert answer.status == 302
        assert first.follow(answer).status == 200
        accounts.age_sends(services, account.user_id, timedelta(days=2))
        messages, audited = _so_far(inbox, services, account)
        lookups.clear()
        refused[account.kind] = [
            _start(live_url, account.user_id, "email")[1],  # a new flow
            first.resend(),  # the first flow again
        ]
        assert lookups == []
        _nothing_more(inbox, services, account, messages, audited)
        _, other_channel = _start(live_url, account.user_id, "phone")
        assert other_channel.status == 302

    new_flow, resend = refused["active"]
    for answer in (new_flow, resend):
        assert answer.status == 429 and TOO_MANY_CODES.search(answer.body)
        assert 0 < _retry_after(answer) <= 60
    for mine, theirs in zip(refused["active"], refused["unknown"], strict=True):
        differs = _blank_wait(mine).same_as(_blank_wait(theirs))
        assert not differs, f"an unknown ID's refusal differs in {differs}"


def test_the_start_per_address_limit_refuses_before_any_lookup(
    app: Flask,
    inbox: Inbox,
    services: Services,
    live_url: str,
    recoverable: Typed,
    lookups: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A limit of its own (the limit is part of the counter's key): this address's others
    # do not count here.
    monkeypatch.setitem(app.config, "UMPASS_IDENTIFY_LIMIT", "3 per 17 minutes")
    for _ in range(3):
        _, answer = _start(live_url, accounts.unknown().user_id, "email")
        assert answer.status == 302
    messages, _ = _so_far(inbox, services, recoverable)
    lookups.clear()
    _, refused = _start(live_url, recoverable.user_id, "email")
    assert refused.status == 429 and FROM_YOUR_NETWORK in refused.body
    assert _retry_after(refused) > 0
    assert lookups == []
    _nothing_more(inbox, services, recoverable, messages, audited=0)


@pytest.mark.usefixtures("generous_budgets")
def test_the_resend_per_address_limit_refuses_before_any_lookup_in_any_flow(
    app: Flask,
    inbox: Inbox,
    services: Services,
    live_url: str,
    recoverable: Typed,
    lookups: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(app.config, "UMPASS_SEND_LIMIT", "2 per 17 minutes")
    browser, answer = _start(live_url, recoverable.user_id, "email")
    assert browser.follow(answer).status == 200
    inbox.email_code(recoverable.email)
    for sent in (1, 2):
        accounts.age_sends(services, recoverable.user_id, timedelta(seconds=61))
        assert browser.resend().status == 200
        inbox.email_code(recoverable.email, after=sent)  # a new code each time

    # A new flow's start does not spend the resend's limit, nor does it give any back.
    again, answer = _start(live_url, recoverable.email, "email")
    assert again.follow(answer).status == 200
    accounts.age_sends(services, recoverable.user_id, timedelta(seconds=61))
    messages, audited = _so_far(inbox, services, recoverable)
    lookups.clear()
    for flow in (browser, again):
        refused = flow.resend()
        assert refused.status == 429 and FROM_YOUR_NETWORK in refused.body
        assert _retry_after(refused) > 0
    assert lookups == []
    _nothing_more(inbox, services, recoverable, messages, audited)


def _silently(
    live_url: str, inbox: Inbox, services: Services, refused: Typed, channel: str
) -> None:
    """A start for `refused` whose send a cap refuses answers as one for an unknown ID,
    and nothing reaches its contact."""
    messages, _ = _so_far(inbox, services, refused)
    mine, theirs = RecoveryBrowser(live_url), RecoveryBrowser(live_url)
    starts = [
        mine.start(refused.user_id, channel),
        theirs.start(accounts.unknown().user_id, channel),
    ]
    differs = starts[0].same_as(starts[1])
    assert not differs, f"the start's answer differs in {differs}"
    pages = [mine.follow(starts[0]), theirs.follow(starts[1])]
    differs = pages[0].same_as(pages[1])
    assert not differs, f"the code page differs in {differs}"
    accounts.deliveries_settled()
    assert accounts.messages_to(inbox, refused) == messages


@pytest.mark.usefixtures("generous_budgets")
def test_the_students_send_cap_shared_with_activation_refuses_silently(
    app: Flask,
    inbox: Inbox,
    services: Services,
    live_url: str,
    recoverable: Typed,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tune(app, monkeypatch, student_send_limit="1 per hour")
    _, answer = _start(live_url, recoverable.user_id, "email")
    assert answer.status == 302
    inbox.email_code(recoverable.email)
    # The send counts where activation's sends count, the rows the one cap reads.
    assert accounts.sends_counted(services, recoverable.user_id) == 1

    _silently(live_url, inbox, services, recoverable, "phone")
    assert accounts.sends_counted(services, recoverable.user_id) == 1
    assert accounts.audit_of(services, recoverable.user_id, "contacts.send_refused") == [
        ("contacts.send_refused", {"reason": "student_cap", "channel": "phone"})
    ]
    assert accounts.audit_of(services, recoverable.user_id)[-1] == (
        "recovery.code_not_sent",
        {"channel": "phone", "reason": "throttled"},
    )


@pytest.mark.usefixtures("generous_budgets")
def test_the_days_text_message_budget_refuses_silently(
    app: Flask,
    inbox: Inbox,
    services: Services,
    live_url: str,
    recoverable: Typed,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with services.reads() as db:
        today = db.scalar(select(SendDay).where(SendDay.day == day_of(datetime.now(UTC))))
        sent_today = today.sms_sent if today else 0
    tune(app, monkeypatch, sms_daily_budget=sent_today)  # spent

    _silently(live_url, inbox, services, recoverable, "phone")
    assert accounts.sends_counted(services, recoverable.user_id) == 0
    assert accounts.audit_of(services, recoverable.user_id, "contacts.send_refused") == [
        ("contacts.send_refused", {"reason": "sms_budget", "channel": "phone"})
    ]
    assert accounts.audit_of(services, recoverable.user_id)[-1] == (
        "recovery.code_not_sent",
        {"channel": "phone", "reason": "throttled"},
    )
