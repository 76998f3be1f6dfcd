"""The words of what the service sends, in the student's language: a code, and a notice
to a contact that was replaced."""

from __future__ import annotations

from flask import render_template
from flask_babel import gettext as _

from provider.delivery import EmailMessage, TextMessage
from provider.i18n import HTML_LANG, select_locale


def _language() -> str:
    return HTML_LANG[select_locale()]


def _email(to: str, subject: str, template: str, **context: object) -> EmailMessage:
    """Text and HTML bodies from templates/email/<template>.txt|.html, in the student's
    language."""
    language = _language()
    return EmailMessage(
        to=to,
        subject=subject,
        text=render_template(f"email/{template}.txt", language=language, **context),
        html=render_template(f"email/{template}.html", language=language, **context),
        language=language,
    )


def code_email(to: str, code: str, minutes: int, link: str) -> EmailMessage:
    return _email(
        to, _("Your UMPASS confirmation code"), "code", code=code, minutes=minutes, link=link
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
    message = _(
        "The email address on your UMPASS account was replaced by a new one during "
        "account activation."
    )
    return _email(to, _("Your UMPASS contact details were changed"), "notice", message=message)


def notice_sms(to: str) -> TextMessage:
    return TextMessage(
        to=to,
        text=_(
            "UMPASS: the mobile number on your account was replaced during activation. "
            "Not you? Call the IT help desk."
        ),
    )
