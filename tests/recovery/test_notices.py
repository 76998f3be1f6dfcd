"""Notices: once the recovery is done, every verified contact of the account (email and text
message) is told what happened, when, and what to do if it was not them, in the language
the student used; a contact the account has not verified is not told; and a notice that
cannot be delivered neither undoes nor holds up the recovery.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from babel.dates import format_date
from flask import Flask
from keycloak import KeycloakAdmin

from provider.delivery.smtp import SmtpMailer, SmtpSettings
from provider.services import Services
from provider.services import services as app_services
from tests.support.admin_events import KeycloakWrites
from tests.support.flow_at import DONE_PASSWORD
from tests.support.flow_client import StudentDetails
from tests.support.inbox import Inbox
from tests.support.recovery import RecoveryClient, put_recovery_at
from tests.support.recovery_record import (
    audited,
    keycloak_id,
    open_session,
    session_alive,
    signs_in,
)

NEW = "quiet harbour 4417 kite"


@dataclass(frozen=True)
class Language:
    """The student's language as the browser asks for it, and what a notice holds in it."""

    accept: str  # Accept-Language
    tag: str  # the email's language tag
    locale: str  # how the language writes a date (babel)
    subjects: dict[str, str]  # the email's subject, per outcome
    mail_not_them: str  # what to do if it was not them, in the email
    text_not_them: str  # ... and in the text message


LANGUAGES = [
    Language(
        "en-GB,en;q=0.8",
        "en",
        "en",
        {
            "unlocked": "Your UMPASS account was unlocked",
            "reset": "Your UMPASS password was changed",
        },
        "If it was not, contact the IT help desk at once.",
        "Not you? Call the IT help desk at once.",
    ),
    Language(
        "zh-TW,zh;q=0.9",
        "zh-Hant",
        "zh_Hant",
        {"unlocked": "您的 UMPASS 帳戶已解鎖", "reset": "您的 UMPASS 密碼已更改"},
        "如果不是，請立即聯絡資訊科技服務台。",
        "並非您本人操作？請立即致電資訊科技服務台。",
    ),
    Language(
        "pt-PT,pt;q=0.9",
        "pt",
        "pt",
        {
            "unlocked": "A sua conta UMPASS foi desbloqueada",
            "reset": "A sua palavra-passe UMPASS foi alterada",
        },
        "Se não foi, contacte de imediato o apoio informático.",
        "Não foi você? Ligue já para o apoio informático.",
    ),
]


@pytest.fixture(params=LANGUAGES, ids=["en", "zh-TW", "pt"])
def language(request: pytest.FixtureRequest) -> Language:
    return request.param


def _in_language(browser: RecoveryClient, accept_language: str) -> RecoveryClient:
    browser.client.environ_base["HTTP_ACCEPT_LANGUAGE"] = accept_language
    return browser


def _finish(browser: RecoveryClient, outcome: str):
    if outcome == "unlocked":
        return browser.post("choose", {"choice": "unlock"})
    return browser.post("new-password", {"password": NEW, "confirm": NEW})


@pytest.mark.parametrize("outcome", ["unlocked", "reset"])
def test_every_verified_contact_is_told_in_the_students_language(
    outcome: str,
    language: Language,
    app: Flask,
    inbox: Inbox,
    active_student: StudentDetails,
) -> None:
    who = active_student
    step = "choose" if outcome == "unlocked" else "new-password"
    browser = _in_language(put_recovery_at(app, inbox, step, who), language.accept)
    assert _finish(browser, outcome).headers["Location"].endswith("/recover/finished")

    today = format_date(datetime.now(UTC).date(), "medium", locale=language.locale)
    [mail] = inbox.mails_to(who.email)
    [text] = inbox.texts_to(who.phone)
    assert mail.message["Content-Language"] == language.tag
    assert f'<html lang="{language.tag}">' in mail.html
    assert mail.message["Subject"] == language.subjects[outcome]  # what happened
    for body in (mail.text, text):
        assert today in body, body  # when, as the student's language writes a date
        assert "UTC" in body
    # What to do if it was not them.
    assert language.mail_not_them in mail.text
    assert text.endswith(language.text_not_them), text


def test_an_unverified_contact_is_not_told(
    app: Flask, inbox: Inbox, active_student: StudentDetails, services: Services
) -> None:
    who = active_student
    account = services.keycloak.find_user(who.user_id)
    assert account is not None
    services.keycloak.set_phone(account.id, who.phone, verified=False)
    browser = put_recovery_at(app, inbox, "choose", who)
    assert _finish(browser, "unlocked").headers["Location"].endswith("/recover/finished")
    assert len(inbox.mails_to(who.email)) == 1
    assert inbox.texts_to(who.phone) == []


def test_a_notice_that_cannot_be_delivered_does_not_undo_or_hold_up_the_recovery(
    app: Flask,
    inbox: Inbox,
    active_student: StudentDetails,
    services: Services,
    admin: KeycloakAdmin,
    keycloak_writes: KeycloakWrites,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    who = active_student
    refresh = open_session(services, who.user_id, DONE_PASSWORD)
    # The mail server is gone: its port is held, and nothing listens there.
    with socket.socket() as gone:
        gone.bind(("127.0.0.1", 0))
        mailer = SmtpMailer(SmtpSettings(host="127.0.0.1", port=gone.getsockname()[1]))
        monkeypatch.setattr(app_services(app), "mailer", mailer)
        browser = put_recovery_at(app, inbox, "new-password", who)
        done = _finish(browser, "reset")
    assert done.status_code == 302, done.get_data(as_text=True)[:600]
    assert done.headers["Location"].endswith("/recover/finished")
    assert "Your password is changed" in browser.get("finished").get_data(as_text=True)
    # Everything the recovery does stands; the text message still went out.
    assert not session_alive(services, refresh)
    assert admin.get_sessions(keycloak_id(admin, who.user_id)) == []
    assert signs_in(services, who.user_id, NEW)
    assert audited(services, who.user_id, "recovery.password_reset") == 1
    assert inbox.mails_to(who.email) == []
    assert len(inbox.texts_to(who.phone)) == 1
    assert any(r.getMessage() == "recovery notice not delivered" for r in caplog.records)


def test_a_notice_says_when_and_what_to_do(
    app: Flask, inbox: Inbox, active_student: StudentDetails
) -> None:
    """The English text in full, as a reader meets it."""
    who = active_student
    browser = put_recovery_at(app, inbox, "new-password", who)
    _finish(browser, "reset")
    [mail] = inbox.mails_to(who.email)
    assert mail.message["Subject"] == "Your UMPASS password was changed"
    when = r"[A-Z][a-z]{2} \d{1,2}, \d{4}, \d{1,2}:\d{2}:\d{2}\s[AP]M UTC"
    assert re.search(rf"was changed on {when} with a code sent", mail.text), mail.text
    assert "If it was not, contact the IT help desk at once." in mail.text
    [text] = inbox.texts_to(who.phone)
    assert re.fullmatch(
        rf"UMPASS: your password was changed on {when}\. Not you\? Call the IT help desk at once\.",
        text,
    ), text
