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


def code_email(
    to: str, code: str, minutes: int, link: str, *, recovery: bool = False
) -> EmailMessage:
    """A one-time code; `recovery`: for the account recovery page, not the activation."""
    subject = _("Your UMPASS recovery code") if recovery else _("Your UMPASS confirmation code")
    return _email(to, subject, "code", code=code, minutes=minutes, link=link, recovery=recovery)


def code_sms(to: str, code: str, minutes: int, *, recovery: bool = False) -> TextMessage:
    if recovery:
        text = _(
            "UMPASS account recovery code: %(code)s. It works for %(minutes)s minutes. "
            "Never share it: the help desk will never ask for it.",
            code=code,
            minutes=minutes,
        )
    else:
        text = _(
            "UMPASS code: %(code)s. It works for %(minutes)s minutes. Never share it.",
            code=code,
            minutes=minutes,
        )
    return TextMessage(to=to, text=text)


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


def recovery_notice_email(to: str, what: str, when: str) -> EmailMessage:
    """To a verified address: the account was unlocked or its password reset, at `when`."""
    if what == "reset":
        subject = _("Your UMPASS password was changed")
        message = _(
            "The password of your UMPASS account was changed on %(when)s with a code sent "
            "to a contact you confirmed. Every device signed in to the account was signed out.",
            when=when,
        )
    else:
        subject = _("Your UMPASS account was unlocked")
        message = _(
            "Your UMPASS account was unlocked on %(when)s with a code sent to a contact you "
            "confirmed. The password was not changed.",
            when=when,
        )
    return _email(to, subject, "notice", message=message)


def recovery_notice_sms(to: str, what: str, when: str) -> TextMessage:
    if what == "reset":
        text = _(
            "UMPASS: your password was changed on %(when)s. "
            "Not you? Call the IT help desk at once.",
            when=when,
        )
    else:
        text = _(
            "UMPASS: your account was unlocked on %(when)s. "
            "Not you? Call the IT help desk at once.",
            when=when,
        )
    return TextMessage(to=to, text=text)
