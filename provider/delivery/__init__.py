"""Sending one-time codes and notices: one small interface, real channels behind it.

`Mailer` sends email over SMTP; `SmsGateway` implementations send text messages (a
file/console outbox for development, a generic HTTPS webhook). A failure raises
`DeliveryFailed`, which the flow turns into "we couldn't send it, try again".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class DeliveryFailed(Exception):
    """The channel refused or could not be reached; nothing was delivered."""


@dataclass(frozen=True)
class EmailMessage:
    to: str
    subject: str
    text: str
    html: str
    language: str = "en"


@dataclass(frozen=True)
class TextMessage:
    to: str  # E.164
    text: str


class Mailer(Protocol):
    def send(self, message: EmailMessage) -> None: ...


class SmsGateway(Protocol):
    def send(self, message: TextMessage) -> None: ...
