"""Nothing lost, nothing twice: a fault at each point of the activation write, the account
read back from Keycloak, then the student's retry.

The last step claims the flow, claims the code, makes one Keycloak write, consumes the
code and moves the flow to "done" (provider/flows/steps/activate.py). Faults at the write come
from a real TCP proxy in front of Keycloak (tests/support/fault_proxy.py) that lets the
token, policy and user reads through and fails only the user PUT. Crashes are the
gunicorn worker of a service replica killing itself (SIGKILL) between two of those steps
(tests/support/service_process.py). After each, Keycloak says what it holds (state,
whether a password signs in, its own record of every write) and the student's retry ends
in an account activated exactly once. Each flow is put directly at the password step
(tests/support/flow_at.py); a replica resumes it from the shared database.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta

import pytest
import requests
from keycloak import KeycloakAdmin
from sqlalchemy import func, select

from provider.flows.steps import activate as activation
from provider.keycloak import STATE_ACTIVE, STATE_PENDING
from provider.services import Services
from provider.storage.models import ActivationCode, AuditEvent, Flow
from tests.support.admin_events import KeycloakWrites
from tests.support.fault_proxy import Fault, FaultProxy
from tests.support.flow_at import FlowAt, StepClient
from tests.support.flow_client import FlowClient, StudentDetails, csrf_token
from tests.support.inbox import Inbox
from tests.support.keycloak_login import sign_in
from tests.support.realm_changes import RealmChanges
from tests.support.recovery_record import downstream_events
from tests.support.replicas import HttpBrowser, Replica
from tests.support.students import enrol_student

FIRST = "orbit lantern velvet 1987"
SECOND = "copper meadow whistle 2031"


@dataclasses.dataclass(frozen=True)
class Account:
    """The account as Keycloak and the database hold it."""

    state: str
    has_password: bool
    code_used: bool


UNTOUCHED = Account(STATE_PENDING, has_password=False, code_used=False)


@pytest.fixture
def student(services: Services) -> StudentDetails:
    return enrol_student(
        services,
        "f",
        first_name="Lou",
        last_name="Ip",
        date_of_birth=date(2005, 9, 1),
        id_number="D7654321",
    )


@pytest.fixture
def at_password(flow_at: FlowAt, student: StudentDetails) -> StepClient:
    return flow_at("password", student)


def _keycloak_id(admin: KeycloakAdmin, user_id: str) -> str:
    [user] = admin.get_users({"username": user_id, "exact": True})
    return str(user["id"])


def _account(admin: KeycloakAdmin, services: Services, user_id: str) -> Account:
    """Read back from Keycloak by the realm's admin, not through the service."""
    keycloak_id = _keycloak_id(admin, user_id)
    user = admin.get_user(keycloak_id)
    credentials = admin.get_credentials(keycloak_id)
    with services.sessions() as db:
        used = db.scalars(
            select(ActivationCode.used_at).where(ActivationCode.user_id == user_id)
        ).all()
    return Account(
        user["attributes"]["activation_state"][0],
        any(c["type"] == "password" for c in credentials),
        any(u is not None for u in used),
    )


def _signs_in(services: Services, user_id: str, password: str) -> bool:
    kc = services.settings.keycloak
    return sign_in(kc.url, kc.realm, user_id, password).ok


def _activations_recorded(services: Services, user_id: str) -> int:
    with services.sessions() as db:
        return db.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.subject == user_id, AuditEvent.action == "account.activated")
        )


def _assert_activated_once(
    services: Services,
    admin: KeycloakAdmin,
    writes: KeycloakWrites,
    user_id: str,
    *,
    password: str,
    not_password: str | None = None,
    passwords_set: int = 0,
) -> None:
    assert _account(admin, services, user_id) == Account(STATE_ACTIVE, True, True)
    assert _signs_in(services, user_id, password)
    if not_password is not None:
        assert not _signs_in(services, user_id, not_password)
    keycloak_id = _keycloak_id(admin, user_id)
    assert len(writes.activations(keycloak_id)) == 1  # Keycloak's own record
    assert len(writes.passwords_set(keycloak_id)) == passwords_set
    assert _activations_recorded(services, user_id) == 1
    assert downstream_events(services, user_id, "student.activated") == 1


def _assert_done(response) -> None:
    assert response.status_code == 302, response.get_data(as_text=True)[:600]
    assert str(response.location).endswith("/activate/done")


def _expire_claim(services: Services, user_id: str) -> None:
    """What the passing of CLAIM_LEASE does after a request died mid-activation."""
    with services.sessions.begin() as db:
        flow = db.scalars(select(Flow).where(Flow.user_id == user_id)).one()
        old = (datetime.now(UTC) - activation.CLAIM_LEASE - timedelta(seconds=1)).isoformat()
        flow.state = {**flow.state, "claim": old}


# -- Keycloak fails at the write itself ----------------------------------------------


@pytest.mark.parametrize("fault", [Fault.UNREACHABLE, Fault.UNAVAILABLE_503])
def test_nothing_written_when_keycloak_fails_at_the_activation_write(
    fault: Fault,
    at_password: StepClient,
    proxy: FaultProxy,
    student: StudentDetails,
    services: Services,
    admin: KeycloakAdmin,
    keycloak_writes: KeycloakWrites,
) -> None:
    realm = services.settings.keycloak.realm
    user = f"/admin/realms/{realm}/users/{_keycloak_id(admin, student.user_id)}"
    token = csrf_token(at_password.page("password"))  # the policy is read now, and cached
    assert f"GET /admin/realms/{realm}" in proxy.requests
    trap = proxy.arm("PUT", user, fault)
    before = len(proxy.requests)
    response = at_password.client.post(
        "/activate/password", data={"csrf_token": token, "password": FIRST, "confirm": FIRST}
    )
    assert response.status_code == 503
    assert "Nothing has been changed" in response.get_data(as_text=True)
    # The submit read the account (no link to the activation provider to drop: no DELETE)
    # and failed at its write: nothing earlier failed.
    assert trap.fired.is_set()
    assert proxy.requests[before:] == [f"GET {user}", f"PUT {user}"]
    assert _account(admin, services, student.user_id) == UNTOUCHED
    assert not _signs_in(services, student.user_id, FIRST)
    # The retry goes through at once: the flow was given back, the code kept for it.
    _assert_done(at_password.set_password(FIRST))
    _assert_activated_once(services, admin, keycloak_writes, student.user_id, password=FIRST)


def test_write_in_and_answer_lost_then_the_retrys_password_holds(
    at_password: StepClient,
    proxy: FaultProxy,
    student: StudentDetails,
    services: Services,
    admin: KeycloakAdmin,
    keycloak_writes: KeycloakWrites,
) -> None:
    realm = services.settings.keycloak.realm
    user = f"/admin/realms/{realm}/users/{_keycloak_id(admin, student.user_id)}"
    at_password.page("password")
    trap = proxy.arm("PUT", user, Fault.ANSWER_LOST)
    assert at_password.set_password(FIRST).status_code == 503
    assert trap.fired.is_set()
    # Keycloak applied the write: active with its password, never half of it.
    assert _account(admin, services, student.user_id) == Account(STATE_ACTIVE, True, False)
    assert _signs_in(services, student.user_id, FIRST)
    # The code stayed claimed by this flow, so the retry knows the write for its own and
    # sets the password typed now.
    _assert_done(at_password.set_password(SECOND))
    _assert_activated_once(
        services,
        admin,
        keycloak_writes,
        student.user_id,
        password=SECOND,
        not_password=FIRST,
        passwords_set=1,
    )


# -- the process dies between two steps ----------------------------------------------

# (crash point, the account right after the crash, whether the first write is already in,
# whether the flow's claim outlived the crash). The flow's and the code's claims are one
# transaction, and so are the code's use and the flow's "done": a crash inside either
# leaves nothing of it, so there is no point between them.
CRASHES = [
    ("in-the-claims", UNTOUCHED, False, False),
    ("after-code-claim", UNTOUCHED, False, True),
    ("in-the-finish", Account(STATE_ACTIVE, True, False), True, True),
]


@pytest.mark.parametrize(("point", "after_crash", "written", "claimed"), CRASHES)
def test_crash_then_retry(
    point: str,
    after_crash: Account,
    written: bool,
    claimed: bool,
    two_replicas: tuple[Replica, Replica],
    flow_at: FlowAt,
    student: StudentDetails,
    services: Services,
    admin: KeycloakAdmin,
    inbox: Inbox,
    keycloak_writes: KeycloakWrites,
) -> None:
    replica, _ = two_replicas
    flow = FlowClient(HttpBrowser(replica.url), inbox)
    flow.client.hold_flow(flow_at("password", student).flow_id)
    assert flow.page("password").status_code == 200  # the replica resumes it there
    replica.crash_at(point)
    with pytest.raises(requests.ConnectionError):
        flow.set_password(FIRST)  # the worker died: no answer at all
    assert not replica.crash_armed(point)  # it died there, not somewhere else
    assert _account(admin, services, student.user_id) == after_crash
    assert _signs_in(services, student.user_id, FIRST) is written
    if claimed:
        # Within the lease the flow still looks busy to the replacement worker...
        busy = flow.set_password(SECOND)
        assert busy.status_code == 409
        assert "already activating" in str(busy.get_data(as_text=True))
        # ...after it, the student's retry finishes, and the password typed last holds.
        _expire_claim(services, student.user_id)
    # (A claim that died with its transaction holds nothing: the retry goes on at once.)
    _assert_done(flow.set_password(SECOND))
    _assert_activated_once(
        services,
        admin,
        keycloak_writes,
        student.user_id,
        password=SECOND,
        not_password=FIRST,
        passwords_set=1 if written else 0,
    )


def test_a_refused_flow_cannot_later_overwrite_another_flows_activation(
    flow_at: FlowAt,
    student: StudentDetails,
    services: Services,
    admin: KeycloakAdmin,
    realm_changes: RealmChanges,
) -> None:
    first_tab = flow_at("password", student)
    second_tab = flow_at("password", student)
    policy = admin.get_realm(services.settings.keycloak.realm)["passwordPolicy"]
    with realm_changes.realm_settings({"passwordPolicy": f"{policy} and specialChars(5)"}):
        refused = first_tab.set_password(FIRST)  # Keycloak refuses: nothing written
    assert refused.status_code == 400
    assert second_tab.set_password(SECOND).location.endswith("/activate/done")
    late = first_tab.set_password(FIRST)
    assert late.status_code == 409
    assert "cannot be completed" in late.get_data(as_text=True)
    assert _signs_in(services, student.user_id, SECOND)
    assert not _signs_in(services, student.user_id, FIRST)
