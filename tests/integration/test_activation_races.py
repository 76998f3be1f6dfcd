"""Races that truly race: submits released together through two service replicas under
gunicorn on one database, the Keycloak writes counted by Keycloak itself.

Each replica is a process of its own, so the gateway's per-user lock (one per process)
cannot line the submits up. The gateway's already-active check is blinded in both
(`unguard`, tests/support/service_process.py), as it is whenever two replicas read the
account before either writes. What is left is what these tests are about: the two
compare-and-sets in the database (provider/flows/steps/activate.py). The flow claim stops
twenty submits of one flow; the code claim stops four flows (tabs) of one student. Each
test fails when its compare-and-set is taken out, the other left in.

Every submit is sent whole but for its last byte, the last bytes then released together
by a barrier (tests/support/replicas.race), half of them to each replica. Keycloak's admin
events count the writes: any user PUT that makes the account active carries a password,
and so does any password set on its own. Each flow is put directly at the password step
(tests/support/flow_at.py), where either replica resumes it from the shared database.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from keycloak import KeycloakAdmin
from sqlalchemy import func, select

from provider.services import Services
from provider.storage.models import AuditEvent
from tests.support.admin_events import KeycloakWrites
from tests.support.flow_at import FlowAt
from tests.support.flow_client import FlowClient, StudentDetails, csrf_token
from tests.support.keycloak_login import sign_in
from tests.support.recovery_record import downstream_events
from tests.support.replicas import HttpBrowser, Replica, Submit, race
from tests.support.students import enrol_student

PASSWORD = "orbit lantern velvet 1987"


@pytest.fixture
def student(services: Services) -> StudentDetails:
    return enrol_student(services, "r", first_name="Sam", last_name="Ho")


@pytest.fixture
def unguarded(two_replicas: tuple[Replica, Replica]) -> Iterator[tuple[Replica, Replica]]:
    for replica in two_replicas:
        replica.unguard()
    yield two_replicas  # two_replicas guards them again afterwards


def _at_password(flow_at: FlowAt, replica: Replica, student: StudentDetails) -> FlowClient:
    """A browser over HTTP whose flow is at the password step."""
    flow = FlowClient(HttpBrowser(replica.url))
    flow.client.hold_flow(flow_at("password", student).flow_id)
    assert flow.page("password").status_code == 200  # the replica resumes it there
    return flow


def _submit(replica: Replica, flow: FlowClient, password: str) -> Submit:
    browser: HttpBrowser = flow.client
    browser.base_url = replica.url  # the page is read from the replica the post goes to
    token = csrf_token(flow.page("password"))
    return Submit(
        replica.url,
        "/activate/password",
        browser.cookie_header(),
        {"csrf_token": token, "password": password, "confirm": password},
    )


def _keycloak_id(admin: KeycloakAdmin, user_id: str) -> str:
    [user] = admin.get_users({"username": user_id, "exact": True})
    return str(user["id"])


def _activations_recorded(services: Services, user_id: str) -> int:
    with services.sessions() as db:
        return db.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.subject == user_id, AuditEvent.action == "account.activated")
        )


def _signs_in(services: Services, user_id: str, password: str) -> bool:
    kc = services.settings.keycloak
    return sign_in(kc.url, kc.realm, user_id, password).ok


def test_twenty_parallel_submits_of_one_flow_write_once(
    unguarded: tuple[Replica, Replica],
    flow_at: FlowAt,
    student: StudentDetails,
    services: Services,
    admin: KeycloakAdmin,
    keycloak_writes: KeycloakWrites,
) -> None:
    flow = _at_password(flow_at, unguarded[0], student)
    # One browser, one form, submitted twenty times at once: ten to each replica.
    submits = [_submit(replica, flow, PASSWORD) for replica in unguarded]
    statuses = race([submits[i % 2] for i in range(20)])
    keycloak_id = _keycloak_id(admin, student.user_id)
    writes = (len(keycloak_writes.activations(keycloak_id)), keycloak_writes.of(keycloak_id))
    assert keycloak_writes.credential_writes(keycloak_id) == 1, (statuses, writes)
    # One went on; the others were told activation is under way, or (arriving after it
    # finished) sent to the done page.
    assert set(statuses) <= {302, 409}, statuses
    assert statuses.count(409) >= 1, statuses
    assert _activations_recorded(services, student.user_id) == 1
    assert downstream_events(services, student.user_id, "student.activated") == 1
    assert _signs_in(services, student.user_id, PASSWORD)


def test_four_tabs_racing_activate_once(
    unguarded: tuple[Replica, Replica],
    flow_at: FlowAt,
    student: StudentDetails,
    services: Services,
    admin: KeycloakAdmin,
    keycloak_writes: KeycloakWrites,
) -> None:
    tabs = [_at_password(flow_at, unguarded[0], student) for _ in range(4)]
    passwords = [f"{PASSWORD} tab{i}" for i in range(4)]
    submits = [_submit(unguarded[i % 2], tab, passwords[i]) for i, tab in enumerate(tabs)]
    statuses = race(submits)
    keycloak_id = _keycloak_id(admin, student.user_id)
    assert keycloak_writes.credential_writes(keycloak_id) == 1, (
        statuses,
        keycloak_writes.of(keycloak_id),
    )
    assert sorted(statuses) == [302, 409, 409, 409], statuses
    winner = statuses.index(302)
    assert _signs_in(services, student.user_id, passwords[winner])
    assert _activations_recorded(services, student.user_id) == 1
    assert downstream_events(services, student.user_id, "student.activated") == 1
