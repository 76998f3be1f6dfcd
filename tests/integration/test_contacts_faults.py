"""The contacts write under faults: the student replaces both contacts and proves them;
"Continue" writes the email, then the phone, to Keycloak, telling each old contact as it
is replaced (provider/flows/contacts_step.py). A fault at either write, a lost answer, or
a crash between or after the writes, then: what Keycloak holds, who was told, and a
retry that ends at the password step with both new contacts verified and each old one
told exactly once (never the new ones).

Faults at a write come from a real TCP proxy in front of Keycloak; crashes are a replica's
gunicorn worker killing itself (see tests/integration/test_activation_faults.py). Each flow
is put directly at the contacts step (tests/support/flow_at.py); the new contacts are then
proven through the step itself, over HTTP to the replica for a crash.
"""

from __future__ import annotations

import dataclasses

import pytest
import requests
from keycloak import KeycloakAdmin

from provider.keycloak import PHONE_NUMBER, PHONE_NUMBER_VERIFIED
from provider.services import Services
from tests.support.fault_proxy import Fault, FaultProxy
from tests.support.flow_at import FlowAt, StepClient
from tests.support.flow_client import FlowClient, StudentDetails
from tests.support.inbox import Inbox, new_mobile
from tests.support.replicas import HttpBrowser, Replica
from tests.support.students import enrol_student


@dataclasses.dataclass(frozen=True)
class Contacts:
    """What Keycloak holds, named by whose contact it is."""

    email: str  # "old" or "new"
    phone: str

    @property
    def replaced(self) -> tuple[str, ...]:
        return tuple(c for c in ("email", "phone") if getattr(self, c) == "new")


@dataclasses.dataclass
class Change:
    student: StudentDetails
    new_email: str
    new_phone: str
    keycloak_id: str


@pytest.fixture
def student(services: Services) -> StudentDetails:
    return enrol_student(services, "c", first_name="Ana", last_name="Lei")


@pytest.fixture
def change(student: StudentDetails, admin: KeycloakAdmin) -> Change:
    [user] = admin.get_users({"username": student.user_id, "exact": True})
    return Change(student, f"new.{student.user_id}@gmail.com", new_mobile(), user["id"])


def _prove_new_contacts(flow: FlowClient, change: Change) -> None:
    """On a flow at the contacts step: both contacts replaced and proven, not yet written."""
    flow.confirm_contacts(
        new_email=change.new_email, new_phone=change.new_phone, then_continue=False
    )


@pytest.fixture
def proven(flow_at: FlowAt, change: Change) -> StepClient:
    flow = flow_at("contacts", change.student)
    _prove_new_contacts(flow, change)
    return flow


def _held(admin: KeycloakAdmin, change: Change) -> Contacts:
    """Read back from Keycloak by the realm's admin; a new contact must be verified."""
    user = admin.get_user(change.keycloak_id)
    attributes = user.get("attributes") or {}
    if user["email"] == change.new_email:
        assert user["emailVerified"] is True
        email = "new"
    else:
        assert user["email"] == change.student.email
        email = "old"
    if attributes.get(PHONE_NUMBER) == [change.new_phone]:
        assert attributes.get(PHONE_NUMBER_VERIFIED) == ["true"]
        phone = "new"
    else:
        assert attributes.get(PHONE_NUMBER) == [change.student.phone]
        phone = "old"
    return Contacts(email, phone)


def _notices(inbox: Inbox, change: Change) -> dict[str, int]:
    """How many "was replaced" notices reached each contact, old and new."""
    return {
        "old email": sum("was replaced" in m.text for m in inbox.mails_to(change.student.email)),
        "old phone": sum("replaced" in t for t in inbox.texts_to(change.student.phone)),
        "new email": sum("was replaced" in m.text for m in inbox.mails_to(change.new_email)),
        "new phone": sum("replaced" in t for t in inbox.texts_to(change.new_phone)),
    }


def _told(*channels: str) -> dict[str, int]:
    return {
        "old email": int("email" in channels),
        "old phone": int("phone" in channels),
        "new email": 0,
        "new phone": 0,
    }


def _retry_succeeds(flow: FlowClient, admin: KeycloakAdmin, change: Change, inbox: Inbox) -> None:
    response = flow.submit("contacts", {"action": "continue"})
    assert response.status_code == 302, response.get_data(as_text=True)[:600]
    assert str(response.location).endswith("/activate/password")
    assert _held(admin, change) == Contacts("new", "new")
    assert _notices(inbox, change) == _told("email", "phone")


# (the fault, which write it hits: 0 email, 1 phone, what Keycloak holds afterwards)
FAULTS = [
    (Fault.UNREACHABLE, 0, Contacts("old", "old")),
    (Fault.UNAVAILABLE_503, 0, Contacts("old", "old")),
    (Fault.ANSWER_LOST, 0, Contacts("new", "old")),
    (Fault.UNREACHABLE, 1, Contacts("new", "old")),
    (Fault.UNAVAILABLE_503, 1, Contacts("new", "old")),
    (Fault.ANSWER_LOST, 1, Contacts("new", "new")),
]


@pytest.mark.parametrize(("fault", "write", "held"), FAULTS)
def test_fault_at_a_contact_write_then_retry(
    fault: Fault,
    write: int,
    held: Contacts,
    proven: StepClient,
    proxy: FaultProxy,
    change: Change,
    services: Services,
    admin: KeycloakAdmin,
    inbox: Inbox,
) -> None:
    user = f"/admin/realms/{services.settings.keycloak.realm}/users/{change.keycloak_id}"
    trap = proxy.arm("PUT", user, fault, skip=write)
    response = proven.submit("contacts", {"action": "continue"})
    assert response.status_code == 503
    assert trap.fired.is_set()
    assert _held(admin, change) == held
    # Each old contact told as soon as its replacement was confirmed, not before.
    told_before = held.replaced if fault is not Fault.ANSWER_LOST else held.replaced[:write]
    assert _notices(inbox, change) == _told(*told_before)
    _retry_succeeds(proven, admin, change, inbox)


@pytest.mark.parametrize(
    ("point", "held"),
    [
        ("between-contact-writes", Contacts("new", "old")),
        ("after-contact-writes", Contacts("new", "new")),
    ],
)
def test_crash_in_the_contact_writes_then_retry(
    point: str,
    held: Contacts,
    two_replicas: tuple[Replica, Replica],
    flow_at: FlowAt,
    change: Change,
    admin: KeycloakAdmin,
    inbox: Inbox,
) -> None:
    replica, _ = two_replicas
    flow = FlowClient(HttpBrowser(replica.url), inbox)
    flow.client.hold_flow(flow_at("contacts", change.student).flow_id)
    _prove_new_contacts(flow, change)
    replica.crash_at(point)
    with pytest.raises(requests.ConnectionError):
        flow.submit("contacts", {"action": "continue"})
    assert not replica.crash_armed(point)
    assert _held(admin, change) == held
    assert _notices(inbox, change) == _told(*held.replaced)
    _retry_succeeds(flow, admin, change, inbox)
