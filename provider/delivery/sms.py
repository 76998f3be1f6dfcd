"""Text-message gateways: a file/console outbox (development) and a generic webhook."""

from __future__ import annotations

import json
import logging
import sys
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from string import Template

import requests

from provider.delivery import DeliveryFailed, TextMessage

log = logging.getLogger(__name__)


class OutboxGateway:
    """Appends each message as a JSON line to a file, or prints it ("-": stdout)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def send(self, message: TextMessage) -> None:
        line = json.dumps(
            {"at": datetime.now(UTC).isoformat(), "to": message.to, "text": message.text},
            ensure_ascii=False,
        )
        with self._lock:
            if self.path == "-":
                print(line, file=sys.stdout, flush=True)
                return
            try:
                target = Path(self.path)
                target.parent.mkdir(parents=True, exist_ok=True)
                with target.open("a", encoding="utf-8") as out:
                    out.write(line + "\n")
            except OSError as exc:
                log.warning("sms not written to the outbox", extra={"reason": type(exc).__name__})
                raise DeliveryFailed("sms") from exc


@dataclass(frozen=True)
class WebhookSettings:
    url: str
    auth_header: str = field(default="", repr=False)  # "Name: value"
    # A JSON template; $to and $text are filled in (JSON-escaped).
    body_template: str = '{"to": "$to", "text": "$text"}'
    timeout: float = 10.0


class WebhookGateway:
    """POSTs a JSON body built from a template to an HTTPS endpoint of the SMS provider."""

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self._session = requests.Session()

    def send(self, message: TextMessage) -> None:
        s = self.settings
        escape = lambda v: json.dumps(v)[1:-1]  # noqa: E731 - inside a JSON string
        body = Template(s.body_template).substitute(
            to=escape(message.to), text=escape(message.text)
        )
        headers = {"Content-Type": "application/json"}
        if s.auth_header and ":" in s.auth_header:
            name, value = s.auth_header.split(":", 1)
            headers[name.strip()] = value.strip()
        try:
            # Never follow a redirect: requests would resend a custom auth header (and the
            # message) to wherever the answer points.
            response = self._session.post(
                s.url, data=body.encode(), headers=headers, timeout=s.timeout, allow_redirects=False
            )
        except requests.RequestException as exc:
            log.warning("sms gateway unreachable", extra={"reason": type(exc).__name__})
            raise DeliveryFailed("sms") from exc
        if response.status_code >= 300:
            log.warning("sms gateway refused", extra={"status": response.status_code})
            raise DeliveryFailed("sms")
