"""Step 3, contacts, on a flow put at it: real SMTP, the SMS outbox, real Keycloak."""

from __future__ import annotations

import html
import re
import secrets

import pytest
from flask import Flask

from provider.flows.state import OnRecord, PendingContact
from provider.keycloak import PHONE_NUMBER, PHONE_NUMBER_VERIFIED, STATE_ACTIVE
from provider.recovery.lookup import verified_contact
from provider.services import Services
from provider.services import services as app_services
from tests.support.addresses import fresh_address
from tests.support.contacts_page import (
    a_minute_passes,
    choose,
    metrics,
    primary_buttons,
    send_refusals,
    tune,
)
from tests.support.flow_at import DONE_PASSWORD, FlowAt, StepClient
from tests.support.flow_client import StudentDetails
from tests.support.inbox import Inbox, new_mobile
from tests.support.students import enrol_student


@pytest.fixture
def at_contacts(flow_at: FlowAt, student: StudentDetails) -> StepClient:
    return flow_at("contacts", student)


def _unchanged(services: Services, student: StudentDetails) -> None:
    """Keycloak still holds the student's contacts as enrolled, unproven."""
    user = services.keycloak.find_user(student.user_id)
    assert user is not None
    assert (user.email, user.email_verified) == (student.email, False)
    assert user.attribute(PHONE_NUMBER) == student.phone
    assert user.attribute(PHONE_NUMBER_VERIFIED) != "true"


def test_the_page_shows_the_contacts_on_record_to_keep_or_change(
    at_contacts: StepClient, student: StudentDetails
) -> None:
    page = at_contacts.page("contacts")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "Step 3 of 5" in body
    assert f"+853 ••••{student.phone[-4:]}" in body and "s•••@example.edu" in body
    for name in ("email_choice", "new_email", "phone_choice", "new_phone"):
        assert f'name="{name}"' in body
    assert 'value="choose"' in body and 'name="csrf_token"' in body
    # Each kept, unproven contact: proving it offered in one tap, and why (said once).
    assert body.count("Send a code to confirm") == 2
    assert body.count("Not confirmed yet.") == 2
    assert body.count("we can help you only through a contact confirmed with a code.") == 1
    assert primary_buttons(body) == ["choose"]


def test_choosing_a_new_email_sends_its_code_at_once_and_writes_nothing(
    at_contacts: StepClient, student: StudentDetails, services: Services, inbox: Inbox
) -> None:
    new_email = f"new.{student.user_id}@gmail.com"
    response = choose(at_contacts, email_choice="change", new_email=new_email)
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert "Code sent." in body and f'<span class="contact">{new_email}</span>' in body
    assert len(inbox.mails_to(new_email)) == 1  # no "Send code" tap needed
    assert 'name="code_email"' in body and 'value="send-phone"' in body
    assert primary_buttons(body) == ["continue"]  # type the code, then Continue
    flow = at_contacts.flow()
    assert flow.step == "contacts"
    assert flow.data is not None and flow.data.pending == {
        "email": PendingContact(value=new_email, shown=new_email, replaces=True, sent=True),
        # Kept, not proven: it may be (its code goes to the number on record), need not be.
        "phone": PendingContact(
            value=None, shown=f"+853 ••••{student.phone[-4:]}", replaces=False, optional=True
        ),
    }
    _unchanged(services, student)  # nothing unproven is ever written
    assert inbox.mails_to(student.email) == []  # the kept one's code only when asked


def test_contacts_proven_before_need_nothing_more(
    flow_at: FlowAt, student: StudentDetails, services: Services, inbox: Inbox
) -> None:
    user = services.keycloak.find_user(student.user_id)
    assert user is not None
    services.keycloak.set_email(user.id, student.email, verified=True)
    services.keycloak.set_phone(user.id, student.phone, verified=True)
    flow = flow_at("contacts", student)
    response = choose(flow)
    assert response.status_code == 302 and response.location.endswith("/activate/password")
    data = flow.data
    assert flow.flow().step == "password"
    assert data.pending is None
    assert data.on_record == {
        "email": OnRecord("s•••@example.edu", True),
        "phone": OnRecord(f"+853 ••••{student.phone[-4:]}", True),
    }
    assert inbox.mails_to(student.email) == [] and inbox.texts_to(student.phone) == []


def test_new_contacts_are_proven_written_and_the_old_ones_told(
    at_contacts: StepClient, student: StudentDetails, services: Services, inbox: Inbox
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
    # The flow moved on holding the new contacts, masked and proven, and nothing owed.
    data = at_contacts.data
    assert at_contacts.flow().step == "password"
    assert data.pending is None and data.owed == {}
    assert data.on_record["email"] == OnRecord("n•••@gmail.com", True)
    assert data.on_record["phone"] == OnRecord(f"+853 ••••{new_phone[-4:]}", True)


def test_resend_is_throttled_before_the_gateway(
    at_contacts: StepClient, student: StudentDetails, inbox: Inbox
) -> None:
    assert choose(at_contacts, action="send-email").status_code == 200
    before = len(inbox.mails_to(student.email))
    again = at_contacts.submit("contacts", {"action": "send-email"})
    assert again.status_code == 429
    assert 55 <= int(again.headers["Retry-After"]) <= 60
    assert "New code in" in again.get_data(as_text=True)
    assert len(inbox.mails_to(student.email)) == before  # the gateway was never called


def test_header_injection_is_refused_and_nothing_sent(
    at_contacts: StepClient, student: StudentDetails, services: Services, inbox: Inbox
) -> None:
    version = at_contacts.flow().version
    before = len(inbox.handler.mails)
    response = choose(
        at_contacts, email_choice="change", new_email="a@example.com\r\nBcc: victim@example.com"
    )
    assert response.status_code == 400
    assert "An email address is one line" in response.get_data(as_text=True)
    assert len(inbox.handler.mails) == before
    assert (at_contacts.flow().version, at_contacts.data.pending) == (version, None)
    _unchanged(services, student)


def test_bad_phone_gets_a_reason(
    at_contacts: StepClient, student: StudentDetails, services: Services
) -> None:
    version = at_contacts.flow().version
    response = choose(at_contacts, phone_choice="change", new_phone="+44 7911 123456")
    assert response.status_code == 400
    assert "Use a mobile number from one of these places" in response.get_data(as_text=True)
    assert (at_contacts.flow().version, at_contacts.data.pending) == (version, None)
    _unchanged(services, student)


# -- what the FAQ asks: a code for a new contact only; proof of a kept one offered ----------


def _verified(services: Services, student: StudentDetails) -> tuple[bool, bool]:
    """(email, phone): whether Keycloak marks each verified, and so recovery may use it."""
    user = services.keycloak.find_user(student.user_id)
    assert user is not None
    return verified_contact(user, "email") is not None, verified_contact(user, "phone") is not None


def test_kept_contacts_continue_without_a_code_and_stay_unverified(
    at_contacts: StepClient, student: StudentDetails, services: Services, inbox: Inbox
) -> None:
    response = choose(at_contacts)  # "Continue" with both kept, nothing proven
    assert response.status_code == 302 and response.location.endswith("/activate/password")
    assert at_contacts.flow().step == "password" and at_contacts.data.pending is None
    assert inbox.mails_to(student.email) == [] and inbox.texts_to(student.phone) == []
    # Through the activation's final write: active, the contacts as the Registry gave
    # them, unverified, so recovery never sends a code to either.
    done = at_contacts.set_password(DONE_PASSWORD)
    assert done.status_code == 302 and done.location.endswith("/activate/done")
    user = services.keycloak.find_user(student.user_id)
    assert user is not None and user.activation_state == STATE_ACTIVE
    _unchanged(services, student)
    assert _verified(services, student) == (False, False)


def test_proving_a_kept_contact_takes_one_tap_and_marks_only_it_verified(
    at_contacts: StepClient, student: StudentDetails, services: Services, inbox: Inbox
) -> None:
    sent = choose(at_contacts, action="send-email")  # "Send a code to confirm" by the email
    assert sent.status_code == 200
    body = sent.get_data(as_text=True)
    assert "Code sent." in body and 'Your email address: <span class="contact">s•••@' in body
    assert primary_buttons(body) == ["continue"]  # type the code, then Continue
    assert "Send a code to confirm" in body and inbox.texts_to(student.phone) == []
    code = inbox.email_code(student.email)  # to the address on record
    # One tap checks the code and goes on: the phone may stay unproven.
    response = at_contacts.submit("contacts", {"action": "continue", "code_email": code})
    assert response.status_code == 302 and response.location.endswith("/activate/password")
    assert _verified(services, student) == (True, False)
    user = services.keycloak.find_user(student.user_id)
    assert user is not None and user.email == student.email
    assert user.attribute(PHONE_NUMBER) == student.phone  # unproven: untouched
    assert at_contacts.data.on_record["email"] == OnRecord("s•••@example.edu", True)
    assert at_contacts.data.on_record["phone"].verified is False
    assert inbox.mails_to(student.email)[-1].message["Subject"] == "Your UMPASS confirmation code"


def test_the_university_can_require_proof_of_kept_contacts(
    app: Flask,
    at_contacts: StepClient,
    student: StudentDetails,
    services: Services,
    inbox: Inbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tune(app, monkeypatch, require_proof_of_kept_contacts=True)
    body = at_contacts.page("contacts").get_data(as_text=True)
    assert "Send a code to confirm" not in body and "(not confirmed yet)" in body
    asked = choose(at_contacts)
    assert asked.status_code == 200  # both must be proven: both codes go out at once
    assert len(inbox.mails_to(student.email)) == 1 and len(inbox.texts_to(student.phone)) == 1
    assert primary_buttons(asked.get_data(as_text=True)) == ["continue"]
    refused = at_contacts.submit("contacts", {"action": "continue"})
    assert refused.status_code == 400
    assert refused.get_data(as_text=True).count("Enter the 6-digit code") == 4  # summary, field
    assert at_contacts.flow().step == "contacts"
    _unchanged(services, student)
    email_code, text_code = inbox.email_code(student.email), inbox.sms_code(student.phone)
    wrong = f"{(int(text_code) + 1) % 1_000_000:06d}"
    # The right email code and a wrong text code: the email stays proven, nothing written.
    half = at_contacts.submit(
        "contacts", {"action": "continue", "code_email": email_code, "code_phone": wrong}
    )
    assert half.status_code == 400 and "That code is not right." in half.get_data(as_text=True)
    assert at_contacts.data.pending is not None and at_contacts.data.pending["email"].verified
    _unchanged(services, student)
    proven = at_contacts.submit("contacts", {"action": "continue", "code_phone": text_code})
    assert proven.status_code == 302
    assert _verified(services, student) == (True, True)


def test_a_changed_contact_still_needs_its_code(
    at_contacts: StepClient, student: StudentDetails, services: Services, inbox: Inbox
) -> None:
    new_email = f"changed.{student.user_id}@gmail.com"
    choose(at_contacts, email_choice="change", new_email=new_email)
    refused = at_contacts.submit("contacts", {"action": "continue"})
    assert refused.status_code == 400
    assert "Enter the 6-digit code" in refused.get_data(as_text=True)
    _unchanged(services, student)
    code = inbox.email_code(new_email)  # sent with the choice
    response = at_contacts.submit("contacts", {"action": "continue", "code_email": code})
    assert response.status_code == 302
    user = services.keycloak.find_user(student.user_id)
    assert user is not None and (user.email, user.email_verified) == (new_email, True)
    assert _verified(services, student) == (True, False)  # the kept phone: not proven


def test_the_resend_wait_says_when_to_reload_and_hides_the_button(
    at_contacts: StepClient, student: StudentDetails, services: Services
) -> None:
    """Without JavaScript: the wait in words and a plain link to load the page again (a
    reload of a posted page would post again); static/js/countdown.js counts it down."""
    body = choose(at_contacts, action="send-phone").get_data(as_text=True)
    assert re.search(r"New code in (59|60) seconds\.", body)
    assert 'href="/activate/contacts">Then reload this page to ask for it.</a>' in body
    assert 'data-other="New code in {n} seconds."' in body
    assert 'data-one="New code in 1 second."' in body
    assert re.search(r'<span id="send-phone" hidden>\s*<button[^>]*value="send-phone"', body)
    assert "js/countdown.js" in body
    # Loaded again (GET, as the link does) once the wait is over: the button, no script.
    a_minute_passes(services, student)
    again = at_contacts.page("contacts").get_data(as_text=True)
    assert "New code in" not in again and "js/countdown.js" not in again
    assert 'value="send-phone">Send a new code</button>' in again


def test_wrong_code_says_how_many_tries_are_left(
    at_contacts: StepClient, student: StudentDetails, inbox: Inbox
) -> None:
    choose(at_contacts, action="send-phone")
    code = inbox.sms_code(student.phone)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    response = at_contacts.submit("contacts", {"action": "verify-phone", "code_phone": wrong})
    assert response.status_code == 400
    assert "You have 4 tries left." in response.get_data(as_text=True)
    pending = at_contacts.data.pending
    assert pending is not None and pending["phone"].verified is False


def test_five_wrong_tries_count_across_a_resend(
    at_contacts: StepClient, student: StudentDetails, inbox: Inbox, services: Services
) -> None:
    choose(at_contacts, action="send-phone")
    first = inbox.sms_code(student.phone)
    wrong = f"{(int(first) + 1) % 10**6:06d}"
    for left in (4, 3, 2):
        answer = at_contacts.submit("contacts", {"action": "verify-phone", "code_phone": wrong})
        assert f"You have {left} tries left." in answer.get_data(as_text=True)
    a_minute_passes(services, student)
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
    a_minute_passes(services, student)
    refused = at_contacts.submit("contacts", {"action": "send-phone"})
    assert refused.status_code == 400
    assert "Too many wrong codes" in html.unescape(refused.get_data(as_text=True))


def test_smtp_down_is_a_plain_retry_and_costs_nothing(
    app: Flask,
    at_contacts: StepClient,
    student: StudentDetails,
    inbox: Inbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mailer = app_services(app).mailer
    monkeypatch.setattr(mailer, "settings", type(mailer.settings)(host="127.0.0.1", port=9))
    failed = choose(at_contacts, action="send-email")
    assert failed.status_code == 503
    assert "We couldn't send the code to your email address" in html.unescape(
        failed.get_data(as_text=True)
    )
    monkeypatch.undo()
    retried = at_contacts.submit("contacts", {"action": "send-email"})  # not throttled
    assert retried.status_code == 200
    assert inbox.email_code(student.email)


def test_an_email_taken_by_another_account_is_refused(
    at_contacts: StepClient, student: StudentDetails, services: Services, inbox: Inbox
) -> None:
    other = f"taken{secrets.token_hex(3)}"
    taken = f"{other}@example.edu"
    services.keycloak.create_user(other, email=taken, first_name="T", last_name="T")
    choose(at_contacts, email_choice="change", new_email=taken)
    at_contacts.submit("contacts", {"action": "send-email"})
    at_contacts.submit(
        "contacts", {"action": "verify-email", "code_email": inbox.email_code(taken)}
    )
    response = at_contacts.submit("contacts", {"action": "continue"})
    assert response.status_code == 400
    assert "That email address belongs to another account." in response.get_data(as_text=True)
    user = services.keycloak.find_user(student.user_id)
    assert user is not None and user.email == student.email  # unchanged
    assert at_contacts.flow().step == "contacts"


def test_code_sends_are_limited_per_client_address(
    app: Flask, flow_at: FlowAt, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "UMPASS_SEND_LIMIT", "2 per hour")
    address = {"REMOTE_ADDR": fresh_address()}  # a WSGI value only
    statuses = []
    for _ in range(3):  # three students on one network, one send each
        flow = flow_at("contacts", enrol_student(services, "n"))
        flow.client.environ_base.update(address)
        statuses.append(choose(flow, action="send-email").status_code)
    assert statuses == [200, 200, 429]


def test_a_new_contact_spends_the_address_budget_whatever_the_action_says(
    app: Flask, flow_at: FlowAt, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any choice that types a new contact sends its code: the per-address limit counts
    it, also when the post names an action the page never offers."""
    monkeypatch.setitem(app.config, "UMPASS_SEND_LIMIT", "2 per hour")
    address = {"REMOTE_ADDR": fresh_address()}
    statuses = []
    for action in ("choose", "nonsense", "nonsense"):
        who = enrol_student(services, "n")
        flow = flow_at("contacts", who)
        flow.client.environ_base.update(address)
        new_email = f"budget.{who.user_id}@gmail.com"
        statuses.append(
            choose(flow, action=action, email_choice="change", new_email=new_email).status_code
        )
    assert statuses == [200, 200, 429]


def test_only_unproven_contacts_are_asked_for_and_odd_actions_do_no_harm(
    flow_at: FlowAt, services: Services, inbox: Inbox, student: StudentDetails
) -> None:
    user = services.keycloak.find_user(student.user_id)
    assert user is not None
    services.keycloak.set_phone(user.id, student.phone, verified=True)  # proven before
    flow = flow_at("contacts", student)
    page = choose(flow, action="send-email")
    body = page.get_data(as_text=True)
    assert 'name="code_email"' in body and 'value="send-phone"' not in body
    for odd in (
        {"action": "verify-phone", "code_phone": "123456"},
        {"action": "send-phone"},
        {"action": "nonsense"},
        {},
    ):
        assert flow.submit("contacts", odd).status_code == 200
    assert not inbox.texts_to(student.phone)


# -- the per-student cap and the daily text budget -----------------------------------------------


def test_the_text_budget_refuses_the_next_text_and_email_still_works(
    app: Flask,
    flow_at: FlowAt,
    at_contacts: StepClient,
    student: StudentDetails,
    services: Services,
    inbox: Inbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = metrics(app)
    refused_before = before[("umpass_code_sends_refused_total", (("reason", "sms_budget"),))]
    sent_before = int(before[("umpass_sms_sent_today", ())])
    # Room for one more text today, whatever the earlier tests sent.
    tune(app, monkeypatch, sms_daily_budget=sent_before + 1)
    assert choose(at_contacts, action="send-phone").status_code == 200
    assert inbox.sms_code(student.phone)
    # Another student's text is one too many.
    other = enrol_student(services, "b")
    flow = flow_at("contacts", other)
    refused = choose(flow, action="send-phone")
    assert refused.status_code == 429
    assert 0 < int(refused.headers["Retry-After"]) <= 24 * 3600  # midnight UTC
    text = html.unescape(refused.get_data(as_text=True))
    assert "We can't send more text messages today." in text
    assert "You can still confirm your email address now" in text
    assert inbox.texts_to(other.phone) == []
    # Email still works.
    assert flow.submit("contacts", {"action": "send-email"}).status_code == 200
    assert inbox.email_code(other.email)
    assert send_refusals(services, other.user_id) == [{"reason": "sms_budget", "channel": "phone"}]
    after = metrics(app)
    assert after[("umpass_sms_sent_today", ())] == sent_before + 1
    assert after[("umpass_sms_daily_budget", ())] == sent_before + 1
    assert after[("umpass_code_sends_refused_total", (("reason", "sms_budget"),))] == (
        refused_before + 1
    )


def test_a_text_that_was_not_delivered_costs_no_budget(
    app: Flask,
    at_contacts: StepClient,
    student: StudentDetails,
    inbox: Inbox,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path,
) -> None:
    sent_before = int(metrics(app)[("umpass_sms_sent_today", ())])
    tune(app, monkeypatch, sms_daily_budget=sent_before + 1)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    sms = app_services(app).sms
    with monkeypatch.context() as broken:
        broken.setattr(sms, "path", str(blocker / "outbox.jsonl"))  # cannot be written
        failed = choose(at_contacts, action="send-phone")
    assert failed.status_code == 503
    assert metrics(app)[("umpass_sms_sent_today", ())] == sent_before
    retried = at_contacts.submit("contacts", {"action": "send-phone"})  # the unit came back
    assert retried.status_code == 200
    assert inbox.sms_code(student.phone)
    assert metrics(app)[("umpass_sms_sent_today", ())] == sent_before + 1


def test_texts_off_is_a_plain_message_and_email_still_works(
    app: Flask,
    at_contacts: StepClient,
    student: StudentDetails,
    inbox: Inbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tune(app, monkeypatch, sms_daily_budget=0)
    refused = choose(at_contacts, action="send-phone")
    assert refused.status_code == 503
    assert "We can't send text messages at the moment." in html.unescape(
        refused.get_data(as_text=True)
    )
    assert inbox.texts_to(student.phone) == []
    assert at_contacts.submit("contacts", {"action": "send-email"}).status_code == 200
