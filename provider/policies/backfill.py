"""`umpass backfill-policy-evidence`: the service's evidence completed from the accounts.

Students activated before the service kept its own evidence have theirs only on the account
(`accepted_policies`). This reads each activated student's account once (one admin read
each, paced by Keycloak's answers, never a realm-wide search) and keeps what is missing,
each student in a transaction of its own: stopped half-way, a second run goes on where the
first stopped, since a version kept already is skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select

from provider.keycloak import ACCEPTED_POLICIES, UserNotFound
from provider.policies import evidence
from provider.services import Services
from provider.storage.models import ActivationCode, Student


@dataclass
class Backfilled:
    students: int = 0
    kept: int = 0  # acceptances added now
    missing: int = 0  # accounts no longer in Keycloak


def activated_students(svc: Services) -> list[tuple[str, str]]:
    """(user ID, Keycloak id) of every student this service activated."""
    query = (
        select(Student.user_id, Student.keycloak_id)
        .join(ActivationCode, ActivationCode.user_id == Student.user_id)
        .where(ActivationCode.used_at.is_not(None), Student.keycloak_id.is_not(None))
        .distinct()
        .order_by(Student.user_id)
    )
    with svc.reads() as db:
        return [(u, k) for u, k in db.execute(query) if k]


def backfill(svc: Services, on_student: Callable[[], None] = lambda: None) -> Backfilled:
    done = Backfilled()
    for user_id, keycloak_id in activated_students(svc):
        try:
            account = svc.keycloak.get_user(keycloak_id)
        except UserNotFound:
            done.missing += 1
        else:
            records = account.attributes.get(ACCEPTED_POLICIES) or []
            with svc.sessions.begin() as db:
                done.kept += len(evidence.record(db.connection(), user_id, records))
        done.students += 1
        on_student()
    return done
