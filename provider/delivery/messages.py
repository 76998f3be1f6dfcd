"""The words of what the service sends: a code, and a notice to a replaced contact."""

from __future__ import annotations

from flask import render_template

from provider.delivery import EmailMessage, TextMessage


def code_email(to: str, code: str, minutes: int, link: str, language: str = "en") -> EmailMessage:
    context = {"code": code, "minutes": minutes, "link": link, "language": language}
    return EmailMessage(
        to=to,
        subject="Your UMPASS confirmation code",
        text=render_template("email/code.txt", **context),
        html=render_template("email/code.html", **context),
        language=language,
    )


def code_sms(to: str, code: str, minutes: int) -> TextMessage:
    return TextMessage(
        to=to, text=f"UMPASS code: {code}. It works for {minutes} minutes. Never share it."
    )


def notice_email(to: str, what: str, language: str = "en") -> EmailMessage:
    context = {"what": what, "language": language}
    return EmailMessage(
        to=to,
        subject="Your UMPASS contact details were changed",
        text=render_template("email/notice.txt", **context),
        html=render_template("email/notice.html", **context),
        language=language,
    )


def notice_sms(to: str) -> TextMessage:
    return TextMessage(
        to=to,
        text="UMPASS: the mobile number on your account was replaced "
        "during activation. Not you? Call the IT help desk.",
    )
