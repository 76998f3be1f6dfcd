"""The contacts step's events for downstream systems (provider/events): one
`student.contact_verified` per contact written to Keycloak, recorded in the transaction
that moves the flow past the step, so before the `student.activated` of the password
step; never the address or the number. Real Keycloak, real SMTP, the SMS outbox."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from sqlalchemy import select

from provider import audit, events
from provider.keycloak import PHONE_NUMBER, PHONE_NUMBER_VERIFIED
from provider.services import Services
from provider.storage.models import OutboxEvent
from tests.support.contacts_page import choose
from tests.support.flow_at import DONE_PASSWORD, FlowAt, StepClient
from tests.support.flow_client import StudentDetails
from tests.support.inbox import Inbox, new_mobile


@pytest.fixture
def at_contacts(flow_at: FlowAt, student: StudentDetails) -> StepClient:
    return flow_at("contacts", student)


def _events(services: Services, user_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The student's events in the outbox, in outbox order (the order they are sent in)."""
    with services.reads() as db:
        rows = db.scalars(
            select(OutboxEvent).where(OutboxEvent.user_id == user_id).order_by(OutboxEvent.id)
        )
        return [(row.type, row.payload) for row in rows]


def _contact_events(services: Services, user_id: str) -> list[dict[str, Any]]:
    return [p for t, p in _events(services, user_id) if t == events.CONTACT_VERIFIED]


def _says_no_contact(payload: dict[str, Any], *contacts: str) -> None:
    """No contact is in the payload, nor a number's digits without its country code (an
    address's local part may be the user ID, which the payload does carry)."""
    flat = repr(payload)
    for contact in contacts:
        assert contact not in flat
        if "@" not in contact:
            assert contact[-8:] not in flat


def _keycloak_id(services: Services, student: StudentDetails) -> str:
    user = services.keycloak.find_user(student.user_id)
    assert user is not None
    return user.id


def test_each_contact_written_is_one_event_before_the_activation_and_names_no_address(
    at_contacts: StepClient, student: StudentDetails, services: Services
) -> None:
    new_email = f"new.{student.user_id}@gmail.com"
    # A new email (replacing the one on record) and the kept phone, both proven.
    done = at_contacts.confirm_contacts(new_email=new_email, phone=student.phone)
    assert done.status_code == 302 and done.location.endswith("/activate/password")
    keycloak_id = _keycloak_id(services, student)
    email_event, phone_event = _contact_events(services, student.user_id)
    assert {k: v for k, v in email_event.items() if k != "at"} == {
        "user_id": student.user_id,
        "keycloak_id": keycloak_id,
        "channel": "email",
        "replaced": True,
        "changed": ["email"],
    }
    assert {k: v for k, v in phone_event.items() if k != "at"} == {
        "user_id": student.user_id,
        "keycloak_id": keycloak_id,
        "channel": "phone",
        "replaced": False,  # kept, now proven
        "changed": ["phone"],
    }
    assert email_event["at"] == phone_event["at"]
    for payload in (email_event, phone_event):
        _says_no_contact(payload, new_email, student.email, student.phone)
    # "Continue" again (a reload, a double tap): the step is done, nothing more recorded.
    again = at_contacts.submit("contacts", {"action": "continue"})
    assert again.status_code == 302 and again.location.endswith("/activate/password")
    assert len(_contact_events(services, student.user_id)) == 2
    # The activation's event comes after them in the outbox: sent after them, per student.
    activated = at_contacts.set_password(DONE_PASSWORD)
    assert activated.status_code == 302 and activated.location.endswith("/activate/done")
    kinds = [t for t, _ in _events(services, student.user_id)]
    assert kinds == [events.CONTACT_VERIFIED, events.CONTACT_VERIFIED, events.ACTIVATED]
    assert _events(services, student.user_id)[-1][1]["verified_contacts"] == ["email", "phone"]


def test_a_contact_kept_unproven_is_not_written_and_has_no_event(
    at_contacts: StepClient, student: StudentDetails, services: Services
) -> None:
    response = choose(at_contacts)  # both kept, neither proven
    assert response.status_code == 302 and response.location.endswith("/activate/password")
    assert _contact_events(services, student.user_id) == []


def test_a_failure_after_the_keycloak_writes_records_the_events_on_the_retry_once(
    at_contacts: StepClient,
    student: StudentDetails,
    services: Services,
    inbox: Inbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The transaction that moves the flow on fails once, after both contacts are in
    Keycloak and after the events' INSERTs (the funnel's audit row, written last in it,
    raises): no event stays, the flow stays at the step; "Continue" again records exactly
    one event per contact."""
    new_email, new_phone = f"new.{student.user_id}@gmail.com", new_mobile()
    at_contacts.confirm_contacts(new_email=new_email, new_phone=new_phone, then_continue=False)
    record = audit.record
    failed: list[str] = []

    def fails_once(db: Any, actor: str, action: str, *args: Any, **kw: Any) -> None:
        if action == "step.password" and not failed:
            failed.append(action)
            raise RuntimeError("the database failed before the flow's move committed")
        record(db, actor, action, *args, **kw)

    monkeypatch.setattr(audit, "record", fails_once)
    with pytest.raises(RuntimeError):
        at_contacts.submit("contacts", {"action": "continue"})
    assert failed  # it did fail, inside the move's transaction
    user = services.keycloak.find_user(student.user_id)
    assert user is not None and (user.email, user.email_verified) == (new_email, True)
    assert user.attribute(PHONE_NUMBER) == new_phone
    assert user.attribute(PHONE_NUMBER_VERIFIED) == "true"
    assert at_contacts.flow().step == "contacts"
    assert _events(services, student.user_id) == []  # rolled back with the flow's move
    retried = at_contacts.submit("contacts", {"action": "continue"})
    assert retried.status_code == 302 and retried.location.endswith("/activate/password")
    written = _contact_events(services, student.user_id)
    assert [(e["channel"], e["replaced"]) for e in written] == [("email", True), ("phone", True)]
    for payload in written:
        _says_no_contact(payload, new_email, new_phone, student.email, student.phone)
    # Each old contact told once: on the first try, not again on the retry.
    assert sum("was replaced" in m.text for m in inbox.mails_to(student.email)) == 1
    assert sum("replaced" in t for t in inbox.texts_to(student.phone)) == 1
    assert at_contacts.data.replaced == [] and at_contacts.data.owed == {}


def test_a_refused_write_records_nothing_and_a_contact_kept_after_all_is_not_replaced(
    at_contacts: StepClient, student: StudentDetails, services: Services, inbox: Inbox
) -> None:
    """Keycloak refuses the new email (another account holds it): nothing is written, so
    no event. The student goes back and proves the email on record instead: its event
    says nothing was replaced."""
    other = f"taken{secrets.token_hex(3)}"
    taken = f"{other}@example.edu"
    services.keycloak.create_user(other, email=taken, first_name="T", last_name="T")
    choose(at_contacts, email_choice="change", new_email=taken)
    code = inbox.email_code(taken)
    refused = at_contacts.submit("contacts", {"action": "continue", "code_email": code})
    assert refused.status_code == 400
    assert "belongs to another account" in refused.get_data(as_text=True)
    assert _events(services, student.user_id) == []
    assert at_contacts.submit("contacts", {"action": "change"}).status_code == 200
    assert choose(at_contacts, action="send-email").status_code == 200  # keep both
    kept = inbox.email_code(student.email)
    done = at_contacts.submit("contacts", {"action": "continue", "code_email": kept})
    assert done.status_code == 302 and done.location.endswith("/activate/password")
    (event,) = _contact_events(services, student.user_id)
    assert (event["channel"], event["replaced"], event["changed"]) == ("email", False, ["email"])
    assert inbox.mails_to(taken)[-1].message["Subject"] == "Your UMPASS confirmation code"
