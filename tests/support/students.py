"""A fresh pending student for a test: unique user ID, email and mobile, a first code."""

from __future__ import annotations

import secrets
from datetime import date

from provider.keycloak import ACCEPTED_POLICIES
from provider.proofing import normalize_id_last4
from provider.services import Services
from provider.students import NewStudent, create_pending_student
from tests.support.flow_client import StudentDetails
from tests.support.inbox import new_mobile


def enrol_student(
    services: Services,
    prefix: str,
    *,
    first_name: str = "Kit",
    last_name: str = "Wong",
    date_of_birth: date = date(2006, 2, 28),
    id_number: str = "C123456(7)",
    intake: str | None = None,
) -> StudentDetails:
    user_id = f"{prefix}{secrets.token_hex(3)}"
    phone, email = new_mobile(), f"{user_id}@example.edu"
    issued = create_pending_student(
        services,
        NewStudent(user_id, first_name, last_name, email, phone, date_of_birth, id_number, intake),
    )
    last4 = normalize_id_last4(id_number) or ""
    return StudentDetails(user_id, issued.code, date_of_birth, last4, email, phone)


def active_student(
    services: Services, prefix: str, password: str, accepted: list[str]
) -> StudentDetails:
    """Enrolled, then made active the gateway's way (one write) with `password` and the
    account's `accepted_policies` = `accepted` (tests/support/policies.accepted_now: every
    current version, which the realm's policy gate lets on)."""
    who = enrol_student(services, prefix)
    account = services.keycloak.find_user(who.user_id)
    assert account is not None
    services.keycloak.activate(account.id, password, attributes={ACCEPTED_POLICIES: accepted})
    return who
