"""The contacts step through the web layer: real SMTP, the SMS outbox, real Keycloak."""

from __future__ import annotations

import dataclasses
import html
import json
import secrets
import threading
from datetime import date
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from provider.delivery import DeliveryFailed, TextMessage
from provider.delivery.sms import WebhookGateway, WebhookSettings
from provider.guards import verification
from provider.keycloak import PHONE_NUMBER, PHONE_NUMBER_VERIFIED
from provider.services import Services
from provider.services import services as app_services
from provider.storage.models import AuditEvent, ContactSend
from tests.conftest import METRICS_TOKEN
from tests.support.flow_client import FlowClient, StudentDetails
from tests.support.inbox import Inbox, new_mobile
from tests.support.students import enrol_student


@pytest.fixture
def student(services: Services) -> StudentDetails:
    return enrol_student(
        services,
        "k",
        first_name="Ho",
        last_name="Ian",
        date_of_birth=date(2004, 4, 4),
        id_number="E1234567",
    )


@pytest.fixture
def at_contacts(app: Flask, inbox: Inbox, student: StudentDetails) -> FlowClient:
    flow = FlowClient(app.test_client(), inbox)
    assert flow.identify(student).status_code == 302
    assert flow.accept_policies().status_code == 302
    return flow


def _choose(flow: FlowClient, **fields: str):
    data = {"action": "choose", "email_choice": "keep", "phone_choice": "keep", **fields}
    return flow.submit("contacts", data)


def test_new_contacts_are_proven_written_and_the_old_ones_told(
    at_contacts: FlowClient, student: StudentDetails, services: Services, inbox: Inbox
) -> None:
    new_email = f"new.{student.user_id}@gmail.com"
    new_phone = new_mobile()
    response = at_contacts.confirm_contacts(new_email=new_email, new_phone=new_phone)
    assert response.location.endswith("/activate/password")
    user = services.keycloak.find_user(student.user_id)
    assert user is not None
    assert (user.email, user.email_verified) == (new_email, True)
    assert user.attributes[PHONE_NUMBER] == [new_phone]
    assert user.attributes[PHONE_NUMBER_VERIFIED] == ["true"]
    # The replaced contacts are told; no code ever went to them.
    old_mail = inbox.mails_to(student.email)
    assert len(old_mail) == 1 and "was replaced" in old_mail[0].text
    assert inbox.texts_to(student.phone) and "replaced" in inbox.texts_to(student.phone)[-1]
    code_mail = inbox.mails_to(new_email)[-1]
    assert code_mail.message["Subject"] == "Your UMPASS confirmation code"
    assert code_mail.html and f"{services.settings.base_url}/activate/contacts" in code_mail.text


def test_resend_is_throttled_before_the_gateway(
    at_contacts: FlowClient, student: StudentDetails, inbox: Inbox
) -> None:
    assert _choose(at_contacts).status_code == 200
    assert at_contacts.submit("contacts", {"action": "send-email"}).status_code == 200
    before = len(inbox.mails_to(student.email))
    again = at_contacts.submit("contacts", {"action": "send-email"})
    assert again.status_code == 429
    assert 55 <= int(again.headers["Retry-After"]) <= 60
    assert "You can ask for a new code in" in again.get_data(as_text=True)
    assert len(inbox.mails_to(student.email)) == before  # the gateway was never called


def test_header_injection_is_refused_and_nothing_sent(
    at_contacts: FlowClient, inbox: Inbox
) -> None:
    before = len(inbox.handler.mails)
    response = _choose(
        at_contacts, email_choice="change", new_email="a@example.com\r\nBcc: victim@example.com"
    )
    assert response.status_code == 400
    assert "An email address is one line" in response.get_data(as_text=True)
    assert len(inbox.handler.mails) == before


def test_bad_phone_gets_a_reason(at_contacts: FlowClient) -> None:
    response = _choose(at_contacts, phone_choice="change", new_phone="+44 7911 123456")
    assert response.status_code == 400
    assert "Use a mobile number from one of these places" in response.get_data(as_text=True)


def test_continue_needs_every_contact_proven(at_contacts: FlowClient) -> None:
    assert _choose(at_contacts).status_code == 200
    response = at_contacts.submit("contacts", {"action": "continue"})
    assert response.status_code == 400
    assert "Confirm your email address first." in response.get_data(as_text=True)


def test_wrong_code_says_how_many_tries_are_left(
    at_contacts: FlowClient, student: StudentDetails, inbox: Inbox
) -> None:
    _choose(at_contacts)
    at_contacts.submit("contacts", {"action": "send-phone"})
    code = inbox.sms_code(student.phone)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    response = at_contacts.submit("contacts", {"action": "verify-phone", "code_phone": wrong})
    assert response.status_code == 400
    assert "You have 4 tries left." in response.get_data(as_text=True)


def _a_minute_passes(services: Services, student: StudentDetails) -> None:
    """What the 60 seconds between two codes for a contact do, without waiting for them."""
    with services.sessions.begin() as session:
        sends = select(ContactSend).where(ContactSend.user_id == student.user_id)
        for send in session.scalars(sends):
            send.at -= verification.CONTACT_GAP


def test_five_wrong_tries_count_across_a_resend(
    at_contacts: FlowClient, student: StudentDetails, inbox: Inbox, services: Services
) -> None:
    _choose(at_contacts)
    at_contacts.submit("contacts", {"action": "send-phone"})
    first = inbox.sms_code(student.phone)
    wrong = f"{(int(first) + 1) % 10**6:06d}"
    for left in (4, 3, 2):
        answer = at_contacts.submit("contacts", {"action": "verify-phone", "code_phone": wrong})
        assert f"You have {left} tries left." in answer.get_data(as_text=True)
    _a_minute_passes(services, student)
    resent = at_contacts.submit("contacts", {"action": "send-phone"})
    assert resent.status_code == 200
    second = inbox.sms_code(student.phone)
    wrong = f"{(int(second) + 1) % 10**6:06d}"
    # The new code brings no new tries: the count goes on from 2.
    answer = at_contacts.submit("contacts", {"action": "verify-phone", "code_phone": wrong})
    assert "You have 1 try left." in answer.get_data(as_text=True)
    answer = at_contacts.submit("contacts", {"action": "verify-phone", "code_phone": wrong})
    assert "Too many wrong codes for this mobile number" in html.unescape(
        answer.get_data(as_text=True)
    )
    # Not even the right code, nor another one sent later, proves the number in this flow.
    right = at_contacts.submit("contacts", {"action": "verify-phone", "code_phone": second})
    assert right.status_code == 400
    _a_minute_passes(services, student)
    refused = at_contacts.submit("contacts", {"action": "send-phone"})
    assert refused.status_code == 400
    assert "Too many wrong codes" in html.unescape(refused.get_data(as_text=True))


def test_smtp_down_is_a_plain_retry_and_costs_nothing(
    app: Flask,
    at_contacts: FlowClient,
    student: StudentDetails,
    inbox: Inbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _choose(at_contacts)
    mailer = app_services(app).mailer
    monkeypatch.setattr(mailer, "settings", type(mailer.settings)(host="127.0.0.1", port=9))
    failed = at_contacts.submit("contacts", {"action": "send-email"})
    assert failed.status_code == 503
    assert "We couldn't send the code to your email address" in html.unescape(
        failed.get_data(as_text=True)
    )
    monkeypatch.undo()
    retried = at_contacts.submit("contacts", {"action": "send-email"})  # not throttled
    assert retried.status_code == 200
    assert inbox.email_code(student.email)


def test_an_email_taken_by_another_account_is_refused(
    at_contacts: FlowClient, student: StudentDetails, services: Services, inbox: Inbox
) -> None:
    other = f"taken{secrets.token_hex(3)}"
    taken = f"{other}@example.edu"
    services.keycloak.create_user(other, email=taken, first_name="T", last_name="T")
    _choose(at_contacts, email_choice="change", new_email=taken)
    at_contacts.submit("contacts", {"action": "send-email"})
    at_contacts.submit(
        "contacts", {"action": "verify-email", "code_email": inbox.email_code(taken)}
    )
    early = at_contacts.submit("contacts", {"action": "continue"})
    assert "Confirm your mobile number first." in early.get_data(as_text=True)
    at_contacts.submit("contacts", {"action": "send-phone"})
    code = inbox.sms_code(student.phone)
    at_contacts.submit("contacts", {"action": "verify-phone", "code_phone": code})
    response = at_contacts.submit("contacts", {"action": "continue"})
    assert response.status_code == 400
    assert "That email address belongs to another account." in response.get_data(as_text=True)
    user = services.keycloak.find_user(student.user_id)
    assert user is not None and user.email == student.email  # unchanged


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


def test_code_sends_are_limited_per_client_address(
    app: Flask, services: Services, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "UMPASS_SEND_LIMIT", "2 per hour")
    address = {"REMOTE_ADDR": f"192.0.2.{secrets.randbelow(250) + 1}"}  # a WSGI value only
    statuses = []
    for _ in range(3):  # three students on one network, one send each
        student = enrol_student(services, "n", date_of_birth=date(2004, 4, 4), id_number="E1234567")
        flow = FlowClient(app.test_client(), inbox)
        flow.client.environ_base.update(address)
        flow.identify(student)
        flow.accept_policies()
        _choose(flow)
        statuses.append(flow.submit("contacts", {"action": "send-email"}).status_code)
    assert statuses == [200, 200, 429]


def test_only_unproven_contacts_are_asked_for_and_odd_actions_do_no_harm(
    app: Flask, services: Services, inbox: Inbox, student: StudentDetails
) -> None:
    user = services.keycloak.find_user(student.user_id)
    assert user is not None
    services.keycloak.set_phone(user.id, student.phone, verified=True)  # proven before
    flow = FlowClient(app.test_client(), inbox)
    flow.identify(student)
    flow.accept_policies()
    page = _choose(flow)
    body = page.get_data(as_text=True)
    assert 'value="send-email"' in body and 'value="send-phone"' not in body
    for odd in (
        {"action": "verify-phone", "code_phone": "123456"},
        {"action": "send-phone"},
        {"action": "nonsense"},
        {},
    ):
        assert flow.submit("contacts", odd).status_code == 200
    assert not inbox.texts_to(student.phone)


# -- the per-student cap and the daily text budget -----------------------------------------------


def _tune(app: Flask, monkeypatch: pytest.MonkeyPatch, **settings: object) -> None:
    svc = app_services(app)
    monkeypatch.setattr(svc, "settings", dataclasses.replace(svc.settings, **settings))


def _refusals(services: Services, user_id: str) -> list[dict]:
    with services.reads() as session:
        return [
            event.detail
            for event in session.scalars(
                select(AuditEvent)
                .where(AuditEvent.subject == user_id, AuditEvent.action == "contacts.send_refused")
                .order_by(AuditEvent.id)
            )
        ]


def _metrics(app: Flask) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    page = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert page.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(page.get_data(as_text=True))
        for sample in family.samples
    }


def test_identifying_again_does_not_reset_the_students_send_cap(
    app: Flask,
    at_contacts: FlowClient,
    student: StudentDetails,
    services: Services,
    inbox: Inbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _tune(app, monkeypatch, student_send_limit="2 per day")
    _choose(at_contacts)
    assert at_contacts.submit("contacts", {"action": "send-email"}).status_code == 200
    assert at_contacts.submit("contacts", {"action": "send-phone"}).status_code == 200
    # The same activation code again in another browser: a new flow, and a new contact
    # (neither the per-flow nor the per-contact throttle has counted anything there).
    again = FlowClient(app.test_client(), inbox)
    assert again.identify(student).status_code == 302
    assert again.accept_policies().status_code == 302
    fresh = f"again.{student.user_id}@gmail.com"
    assert _choose(again, email_choice="change", new_email=fresh).status_code == 200
    refused = again.submit("contacts", {"action": "send-email"})
    assert refused.status_code == 429
    assert 23 * 3600 < int(refused.headers["Retry-After"]) <= 24 * 3600
    assert "You have asked for the most codes allowed for now." in refused.get_data(as_text=True)
    assert "in about 24 hours" in refused.get_data(as_text=True)
    assert inbox.mails_to(fresh) == []  # nothing sent
    assert _refusals(services, student.user_id) == [{"reason": "student_cap", "channel": "email"}]


def test_the_text_budget_refuses_the_next_text_and_email_still_works(
    app: Flask,
    at_contacts: FlowClient,
    student: StudentDetails,
    services: Services,
    inbox: Inbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = _metrics(app)
    refused_before = before[("umpass_code_sends_refused_total", (("reason", "sms_budget"),))]
    sent_before = int(before[("umpass_sms_sent_today", ())])
    # Room for one more text today, whatever the earlier tests sent.
    _tune(app, monkeypatch, sms_daily_budget=sent_before + 1)
    _choose(at_contacts)
    assert at_contacts.submit("contacts", {"action": "send-phone"}).status_code == 200
    assert inbox.sms_code(student.phone)
    # Another student's text is one too many.
    other = enrol_student(services, "b", date_of_birth=date(2004, 4, 4), id_number="E1234567")
    flow = FlowClient(app.test_client(), inbox)
    flow.identify(other)
    flow.accept_policies()
    _choose(flow)
    refused = flow.submit("contacts", {"action": "send-phone"})
    assert refused.status_code == 429
    assert 0 < int(refused.headers["Retry-After"]) <= 24 * 3600  # midnight UTC
    text = html.unescape(refused.get_data(as_text=True))
    assert "We can't send more text messages today." in text
    assert "You can still confirm your email address now" in text
    assert inbox.texts_to(other.phone) == []
    # Email still works.
    assert flow.submit("contacts", {"action": "send-email"}).status_code == 200
    assert inbox.email_code(other.email)
    assert _refusals(services, other.user_id) == [{"reason": "sms_budget", "channel": "phone"}]
    after = _metrics(app)
    assert after[("umpass_sms_sent_today", ())] == sent_before + 1
    assert after[("umpass_sms_daily_budget", ())] == sent_before + 1
    assert after[("umpass_code_sends_refused_total", (("reason", "sms_budget"),))] == (
        refused_before + 1
    )


def test_a_text_that_was_not_delivered_costs_no_budget(
    app: Flask,
    at_contacts: FlowClient,
    student: StudentDetails,
    inbox: Inbox,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path,
) -> None:
    sent_before = int(_metrics(app)[("umpass_sms_sent_today", ())])
    _tune(app, monkeypatch, sms_daily_budget=sent_before + 1)
    _choose(at_contacts)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    sms = app_services(app).sms
    with monkeypatch.context() as broken:
        broken.setattr(sms, "path", str(blocker / "outbox.jsonl"))  # cannot be written
        failed = at_contacts.submit("contacts", {"action": "send-phone"})
    assert failed.status_code == 503
    assert _metrics(app)[("umpass_sms_sent_today", ())] == sent_before
    retried = at_contacts.submit("contacts", {"action": "send-phone"})  # the unit came back
    assert retried.status_code == 200
    assert inbox.sms_code(student.phone)
    assert _metrics(app)[("umpass_sms_sent_today", ())] == sent_before + 1


def test_texts_off_is_a_plain_message_and_email_still_works(
    app: Flask,
    at_contacts: FlowClient,
    student: StudentDetails,
    inbox: Inbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _tune(app, monkeypatch, sms_daily_budget=0)
    _choose(at_contacts)
    refused = at_contacts.submit("contacts", {"action": "send-phone"})
    assert refused.status_code == 503
    assert "We can't send text messages at the moment." in html.unescape(
        refused.get_data(as_text=True)
    )
    assert inbox.texts_to(student.phone) == []
    assert at_contacts.submit("contacts", {"action": "send-email"}).status_code == 200
