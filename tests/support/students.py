"""A fresh pending student for a test: unique user ID, email and mobile, a first code."""

from __future__ import annotations

import secrets
from datetime import date

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
