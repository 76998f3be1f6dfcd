"""Where the service's messages land in tests: a real SMTP server (aiosmtpd on
loopback) and the SMS outbox file."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import re
import secrets
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from aiosmtpd.controller import Controller

from provider.contact_input import ContactRejected, clean_phone
from tests.support.listeners import loopback_listener, port_of

_CODE = re.compile(r"\b(\d{6})\b")
T = TypeVar("T")


@dataclass
class ReceivedMail:
    to: list[str]
    message: email.message.EmailMessage

    @property
    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        return part.get_content() if part else ""

    @property
    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        return part.get_content() if part else ""


@dataclass
class _Handler:
    mails: list[ReceivedMail] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.mails.append(ReceivedMail(list(envelope.rcpt_tos), message))
        return "250 OK"


class _BoundController(Controller):
    """aiosmtpd serving on a socket bound before it starts (tests.support.listeners).

    aiosmtpd connects to its own port to check it is up, so it must be told the port: it
    is the bound socket's, and the server takes that socket instead of binding again.
    """

    def __init__(self, handler: _Handler, listener: socket.socket) -> None:
        super().__init__(handler, hostname="127.0.0.1", port=port_of(listener))
        self._listener = listener

    def _create_server(self) -> Awaitable[asyncio.AbstractServer]:
        return self.loop.create_server(self._factory_invoker, sock=self._listener)


class Inbox:
    def __init__(self, outbox: Path) -> None:
        self.handler = _Handler()
        self.controller = _BoundController(self.handler, loopback_listener())
        self.outbox = outbox
        self.port = 0

    def start(self) -> int:
        self.controller.start()
        return int(self.controller.port)

    def stop(self) -> None:
        self.controller.stop()

    def mails_to(self, address: str) -> list[ReceivedMail]:
        with self.handler.lock:
            return [m for m in self.handler.mails if address.lower() in (t.lower() for t in m.to)]

    def texts_to(self, number: str) -> list[str]:
        if not self.outbox.exists():
            return []
        lines = self.outbox.read_text(encoding="utf-8").splitlines()
        return [json.loads(line)["text"] for line in lines if json.loads(line)["to"] == number]

    def email_code(self, address: str, *, after: int = 0) -> str:
        """The code in the latest email to `address`, waiting (a few seconds at most) for
        more than `after` of them: some codes are delivered off the request."""
        mails = _wait_for(lambda: self.mails_to(address), after)
        assert mails, f"no email reached {address}"
        match = _CODE.search(mails[-1].text)
        assert match, "no code in the email"
        return match.group(1)

    def sms_code(self, number: str, *, after: int = 0) -> str:
        texts = _wait_for(lambda: self.texts_to(number), after)
        assert texts, f"no text message reached {number}"
        match = _CODE.search(texts[-1])
        assert match, "no code in the text message"
        return match.group(1)


def _wait_for(read: Callable[[], list[T]], after: int, timeout: float = 10.0) -> list[T]:
    """What `read` returns once it holds more than `after` items (or at the timeout)."""
    deadline = time.monotonic() + timeout
    items = read()
    while len(items) <= after and time.monotonic() < deadline:
        time.sleep(0.05)  # polling a mailbox: what arrives is what the test waits for
        items = read()
    return items


def new_mobile() -> str:
    """A fresh valid Macau mobile number, so per-contact throttles never meet across tests.

    Not every 6xxxxxxx is allocated, so draw until phonenumbers agrees it is a mobile.
    """
    while True:
        candidate = f"+8536{secrets.randbelow(10**7):07d}"
        try:
            return clean_phone(candidate)
        except ContactRejected:
            continue
