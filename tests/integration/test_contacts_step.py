"""Code delivery (the SMS webhook gateway) and the one contacts-step guarantee that needs a
second identify: the step's own behaviours are tests/flows/test_contacts.py."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest
from flask import Flask

from provider.delivery import DeliveryFailed, TextMessage
from provider.delivery.sms import WebhookGateway, WebhookSettings
from provider.services import Services
from tests.support.contacts_page import choose, send_refusals, tune
from tests.support.flow_at import put_flow_at
from tests.support.flow_client import FlowClient
from tests.support.inbox import Inbox
from tests.support.students import enrol_student


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict, str]]] = []
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((json.loads(body), self.headers.get("X-Api-Key", "")))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_webhook_gateway_posts_the_template_with_auth() -> None:
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        gateway = WebhookGateway(
            WebhookSettings(
                url=f"http://127.0.0.1:{server.server_port}/sms",
                auth_header="X-Api-Key: k3y",
                body_template='{"to": "$to", "message": "$text", "sender": "UMPASS"}',
            )
        )
        gateway.send(TextMessage(to="+85362345678", text='Code "123456"\nbye'))
        assert _Receiver.received[-1] == (
            {"to": "+85362345678", "message": 'Code "123456"\nbye', "sender": "UMPASS"},
            "k3y",
        )
        _Receiver.status = 500
        with pytest.raises(DeliveryFailed):
            gateway.send(TextMessage(to="+85362345678", text="x"))
    finally:
        _Receiver.status = 200
        server.shutdown()


def test_webhook_gateway_never_follows_a_redirect_with_its_credential() -> None:
    """A 307 from the gateway (or whoever answers at its address) must not carry the
    message and the auth header to another server."""
    elsewhere = HTTPServer(("127.0.0.1", 0), _Receiver)
    redirecting = HTTPServer(("127.0.0.1", 0), _Redirector)
    _Redirector.location = f"http://127.0.0.1:{elsewhere.server_port}/sms"
    threads = [
        threading.Thread(target=s.serve_forever, daemon=True) for s in (elsewhere, redirecting)
    ]
    for thread in threads:
        thread.start()
    received = len(_Receiver.received)
    try:
        gateway = WebhookGateway(
            WebhookSettings(
                url=f"http://127.0.0.1:{redirecting.server_port}/sms",
                auth_header="X-Api-Key: k3y",
                body_template='{"to": "$to", "text": "$text"}',
            )
        )
        with pytest.raises(DeliveryFailed):
            gateway.send(TextMessage(to="+85362345678", text="Code 123456"))
        assert len(_Receiver.received) == received  # nothing reached the other server
    finally:
        elsewhere.shutdown()
        redirecting.shutdown()


class _Redirector(BaseHTTPRequestHandler):
    location = ""

    def do_POST(self) -> None:
        self.send_response(307)
        self.send_header("Location", self.location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_identifying_again_does_not_reset_the_students_send_cap(
    app: Flask, services: Services, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    student = enrol_student(services, "k")
    at_contacts = put_flow_at(app, inbox, "contacts", student)
    tune(app, monkeypatch, student_send_limit="2 per day")
    assert choose(at_contacts, action="send-email").status_code == 200
    assert at_contacts.submit("contacts", {"action": "send-phone"}).status_code == 200
    # The same activation code again in another browser: a new flow, and a new contact
    # (neither the per-flow nor the per-contact throttle has counted anything there).
    again = FlowClient(app.test_client(), inbox)
    assert again.identify(student).status_code == 302
    assert again.accept_policies().status_code == 302
    fresh = f"again.{student.user_id}@gmail.com"
    # A new contact's code goes out with the choice: that is where the cap answers.
    refused = choose(again, email_choice="change", new_email=fresh)
    assert refused.status_code == 429
    assert 23 * 3600 < int(refused.headers["Retry-After"]) <= 24 * 3600
    assert "You have asked for the most codes allowed for now." in refused.get_data(as_text=True)
    assert "in about 24 hours" in refused.get_data(as_text=True)
    assert inbox.mails_to(fresh) == []  # nothing sent
    assert send_refusals(services, student.user_id) == [
        {"reason": "student_cap", "channel": "email"}
    ]
