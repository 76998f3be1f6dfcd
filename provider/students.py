"""Creating one pending student: the Keycloak account, the proofing hashes, a fresh code.

The one-student path, through the service's own credential: `umpass create-student` and
`umpass seed-demo`, the benchmarks and the tests. A re-run finds the account it made (same
username and email), stores the hashes again and issues a new code, revoking the one
before; an account that exists and is not pending is refused (`NotAPendingStudent`).
Bulk intakes go through provider/intake/ (the provisioning credential, partial import).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from provider.activation_codes import EnrolmentError, IssuedCode, enrol, issue_code
from provider.keycloak import ACTIVATION_STATE, PHONE_NUMBER, STATE_PENDING
from provider.proofing import normalize_id_last4, normalize_user_id
from provider.services import Services


@dataclass(frozen=True)
class NewStudent:
    user_id: str
    first_name: str
    last_name: str
    email: str
    phone: str
    date_of_birth: date
    id_number: str
    intake: str | None = None


class NotAPendingStudent(Exception):
    """The account exists and is not pending (active, or staff with no activation state):
    nothing of it is reset, and no code is issued for it."""


def create_pending_student(svc: Services, student: NewStudent) -> IssuedCode:
    """Create (or find) the pending account, store proofing hashes, issue a fresh code."""
    user_id = normalize_user_id(student.user_id, svc.settings.user_id_length)
    if user_id is None or len(student.user_id.strip()) != svc.settings.user_id_length:
        raise ValueError(f"a user ID has {svc.settings.user_id_length} letters or digits")
    if normalize_id_last4(student.id_number) is None:  # checked before anything is written
        raise EnrolmentError("the ID/passport number needs at least 4 letters or digits")
    keycloak_id = svc.keycloak.create_user(
        user_id,
        email=student.email,
        first_name=student.first_name,
        last_name=student.last_name,
        attributes={ACTIVATION_STATE: [STATE_PENDING], PHONE_NUMBER: [student.phone]},
    )
    # An existing account with this username and email is only ever a student waiting
    # for activation: a code for an active or a staff account would let its holder set
    # that account's password.
    if svc.keycloak.get_user(keycloak_id).activation_state != STATE_PENDING:
        raise NotAPendingStudent(user_id)
    return enrol_and_issue(svc, user_id, student, keycloak_id=keycloak_id)


def enrol_and_issue(
    svc: Services, user_id: str, student: NewStudent, *, keycloak_id: str | None = None
) -> IssuedCode:
    """Store the proofing hashes of `user_id` (normalised, an account already known to be
    pending) and issue a fresh code, revoking the one before."""
    with svc.sessions.begin() as session:
        enrol(
            session,
            svc.hasher,
            user_id=user_id,
            date_of_birth=student.date_of_birth,
            id_number=student.id_number,
            intake=student.intake,
            keycloak_id=keycloak_id,
        )
        session.flush()
        return issue_code(session, svc.hasher, user_id)
