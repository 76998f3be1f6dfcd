"""Email over SMTP (plain, STARTTLS or TLS), multipart text + HTML."""

from __future__ import annotations

import email.message
import logging
import smtplib
import ssl
from dataclasses import dataclass, field

from provider.delivery import DeliveryFailed, EmailMessage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "127.0.0.1"
    port: int = 25
    security: str = "none"  # none | starttls | tls
    username: str = ""
    password: str = field(default="", repr=False)
    sender: str = "UMPASS <no-reply@localhost>"
    timeout: float = 10.0


class SmtpMailer:
    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    def send(self, message: EmailMessage) -> None:
        s = self.settings
        mail = email.message.EmailMessage()
        try:
            mail["From"] = s.sender
            mail["To"] = message.to  # typed ones are checked by contact_input.clean_email
            mail["Subject"] = message.subject
            mail.set_content(message.text)
            mail.add_alternative(message.html, subtype="html")
            # After the content: set_content() drops any Content-* header set before it.
            mail["Content-Language"] = message.language
        except ValueError as exc:  # e.g. a line break in an address that came from elsewhere
            log.warning("email not built", extra={"reason": type(exc).__name__})
            raise DeliveryFailed("email") from exc
        try:
            if s.security == "tls":
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    s.host, s.port, timeout=s.timeout, context=ssl.create_default_context()
                )
            else:
                client = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            with client:
                if s.security == "starttls":
                    client.starttls(context=ssl.create_default_context())
                if s.username:
                    client.login(s.username, s.password)
                client.send_message(mail)
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("email not sent", extra={"reason": type(exc).__name__})
            raise DeliveryFailed("email") from exc
