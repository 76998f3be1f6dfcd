"""The words of what the service sends, in the student's language: a code, and a notice
to a contact that was replaced."""

from __future__ import annotations

from flask import render_template
from flask_babel import gettext as _

from provider.delivery import EmailMessage, TextMessage
from provider.i18n import HTML_LANG, select_locale


def _language() -> str:
    return HTML_LANG[select_locale()]


def code_email(to: str, code: str, minutes: int, link: str) -> EmailMessage:
    language = _language()
    context = {"code": code, "minutes": minutes, "link": link, "language": language}
    return EmailMessage(
        to=to,
        subject=_("Your UMPASS confirmation code"),
        text=render_template("email/code.txt", **context),
        html=render_template("email/code.html", **context),
        language=language,
    )


def code_sms(to: str, code: str, minutes: int) -> TextMessage:
    return TextMessage(
        to=to,
        text=_(
            "UMPASS code: %(code)s. It works for %(minutes)s minutes. Never share it.",
            code=code,
            minutes=minutes,
        ),
    )


def notice_email(to: str) -> EmailMessage:
    language = _language()
    message = _(
        "The email address on your UMPASS account was replaced by a new one during "
        "account activation."
    )
    context = {"message": message, "language": language}
    return EmailMessage(
        to=to,
        subject=_("Your UMPASS contact details were changed"),
        text=render_template("email/notice.txt", **context),
        html=render_template("email/notice.html", **context),
        language=language,
    )


def notice_sms(to: str) -> TextMessage:
    return TextMessage(
        to=to,
        text=_(
            "UMPASS: the mobile number on your account was replaced during activation. "
            "Not you? Call the IT help desk."
        ),
    )
