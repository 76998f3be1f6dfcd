"""The production-like topology, brought up once for these tests (scripts/devstack/stack.py):
nginx with TLS, two service replicas under gunicorn, two Keycloak nodes in production mode
clustered on PostgreSQL, Redis for the limits. Everything is reached as deployed: HTTPS
through nginx, with the throwaway CA as the only trusted root.
"""

from __future__ import annotations

import itertools
import secrets
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from devstack.stack import Stack
from devstack.student_walk import CodeReader, Student, StudentBrowser
from keycloak import KeycloakAdmin, KeycloakOpenIDConnection
from sqlalchemy import select

from provider.config import load_settings
from provider.proofing import normalize_id_last4
from provider.services import Services
from provider.storage.models import ActivationCode
from provider.students import NewStudent, create_pending_student
from tests.support.inbox import new_mobile
from tests.support.realm_changes import RealmChanges

# Each student (and each limit test) comes from an address of its own, as on a campus:
# the per-address limits must count the address nginx saw, not the proxy's.
_addresses = (f"127.0.{a}.{b}" for a, b in itertools.product(range(10, 250), range(2, 250)))


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    # This process arranges students through the stack's Keycloak (HTTPS via nginx), as
    # the replicas do: it trusts the throwaway CA the same way (requests reads the variable).
    # Not under pytest's tmp_path: that is closed to other users, and PostgreSQL runs as
    # `postgres` (it refuses root); the work dir only needs to be passable (0711).
    workdir = Path(tempfile.mkdtemp(prefix="umpass-topology-"))
    workdir.chmod(0o711)
    with (
        Stack.up(workdir, fast_hash=True) as running,
        pytest.MonkeyPatch.context() as patch,
    ):
        patch.setenv("REQUESTS_CA_BUNDLE", str(running.ca_file))
        yield running


@pytest.fixture(scope="session")
def stack_services(stack: Stack) -> Services:
    """The service's own objects on the stack's database and realm (for arranging)."""
    return Services.assemble(load_settings(stack.env))


@pytest.fixture(scope="session")
def stack_admin(stack: Stack) -> KeycloakAdmin:
    return KeycloakAdmin(
        connection=KeycloakOpenIDConnection(
            server_url=stack.keycloak_url + "/",
            username=stack.admin_user,
            password=stack.admin_password,
            realm_name=stack.realm,
            user_realm_name="master",
            client_id="admin-cli",
            verify=str(stack.ca_file),
        )
    )


@pytest.fixture
def stack_changes(stack: Stack, stack_admin: KeycloakAdmin) -> Iterator[RealmChanges]:
    """What a test changes in the stack's realm, undone when it ends, passed or failed."""
    changes = RealmChanges(stack_admin, stack.realm)
    yield changes
    changes.undo_all()


@dataclass(frozen=True)
class Accounts:
    """What Keycloak and the database say of a student after a fault: either untouched
    (pending, no password, code unused) or fully done (active, password, code used)."""

    admin: KeycloakAdmin
    services: Services

    def state(self, user_id: str) -> tuple[str, bool, bool]:
        """(activation_state, has a password, latest code used)."""
        [user] = self.admin.get_users({"username": user_id, "exact": True})
        state = user["attributes"]["activation_state"][0]
        credentials = self.admin.get_credentials(user["id"])
        with self.services.reads() as session:
            used = session.scalar(
                select(ActivationCode.used_at)
                .where(ActivationCode.user_id == user_id)
                .order_by(ActivationCode.id.desc())
                .limit(1)
            )
        return state, any(c["type"] == "password" for c in credentials), used is not None

    def assert_untouched(self, who: Student) -> None:
        assert self.state(who.user_id) == ("pending", False, False)

    def assert_activated(self, who: Student) -> None:
        assert self.state(who.user_id) == ("active", True, True)


@pytest.fixture(scope="session")
def accounts(stack_admin: KeycloakAdmin, stack_services: Services) -> Accounts:
    return Accounts(stack_admin, stack_services)


@pytest.fixture(scope="session")
def codes(stack: Stack) -> CodeReader:
    return CodeReader(stack.maildir, stack.sms_log)


@pytest.fixture
def new_address() -> Callable[[], str]:
    return lambda: next(_addresses)


@pytest.fixture
def enrol(stack_services: Services) -> Callable[[], Student]:
    def make() -> Student:
        user_id = f"p{secrets.token_hex(3)}"
        id_number = f"T{secrets.randbelow(10**7):07d}"
        student = NewStudent(
            user_id,
            "Lou",
            "Chan",
            f"{user_id}@example.edu",
            new_mobile(),
            date(2006, 5, 17),
            id_number,
        )
        issued = create_pending_student(stack_services, student)
        return Student(
            user_id,
            issued.code,
            student.date_of_birth,
            normalize_id_last4(id_number) or "",
            student.email,
            student.phone,
        )

    return make


@pytest.fixture
def browser_for(
    stack: Stack, codes: CodeReader, new_address: Callable[[], str]
) -> Callable[[], StudentBrowser]:
    return lambda: StudentBrowser(stack.service_url, stack.ca_file, new_address(), codes)
