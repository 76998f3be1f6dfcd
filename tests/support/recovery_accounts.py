"""Every kind of account a recovery start may name, made in the real realm, and ways to
see what the service did about each (messages delivered, audit events, sends counted)."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from datetime import timedelta

from flask import Flask
from keycloak import KeycloakAdmin
from sqlalchemy import func, select

from provider.delivery import background
from provider.services import Services
from provider.storage.models import AuditEvent, ContactSend, ContactVerification
from tests.support.flow_at import put_flow_at
from tests.support.inbox import Inbox, new_mobile
from tests.support.recovery import activate_student, recovery_engine
from tests.support.staff import create_staff
from tests.support.students import enrol_student


@dataclass(frozen=True)
class Typed:
    """An account as a start can name it, and where a code for it could land."""

    kind: str
    user_id: str
    email: str
    phone: str | None = None  # its mobile number, if it has one
    keycloak_id: str | None = None

    def typed(self, how: str) -> str:
        return self.user_id if how == "user ID" else self.email


def unknown() -> Typed:
    name = f"zz{secrets.token_hex(3)[:5]}"
    return Typed("unknown", name, f"{name}@example.edu", new_mobile())


def pending(app: Flask, inbox: Inbox, services: Services) -> Typed:
    """A pending student midway through activation: both contacts already proven (the
    contacts step writes them verified), the password not yet set."""
    who = enrol_student(services, "p")
    put_flow_at(app, inbox, "password", who)
    return Typed("pending", who.user_id, who.email, who.phone, _id(services, who.user_id))


def active(app: Flask, inbox: Inbox, services: Services, kind: str = "active") -> Typed:
    """An active student, both contacts verified (what recovery is for)."""
    who = enrol_student(services, "r")
    activate_student(app, inbox, who)
    return Typed(kind, who.user_id, who.email, who.phone, _id(services, who.user_id))


def active_unverified(app: Flask, inbox: Inbox, services: Services) -> Typed:
    """Active, but neither contact verified (e.g. changed by an admin since)."""
    account = active(app, inbox, services, "active, no verified contact")
    assert account.keycloak_id and account.phone
    services.keycloak.set_email(account.keycloak_id, account.email, verified=False)
    services.keycloak.set_phone(account.keycloak_id, account.phone, verified=False)
    return account


def active_disabled(app: Flask, inbox: Inbox, services: Services, admin: KeycloakAdmin) -> Typed:
    account = active(app, inbox, services, "active, disabled")
    admin.update_user(account.keycloak_id, {"enabled": False})
    return account


def staff(admin: KeycloakAdmin) -> Typed:
    """A staff account outside the students' group: the service's credential cannot see it."""
    made = create_staff(admin)
    return Typed("staff", made.username, f"{made.username}@example.edu", None, made.id)


def _id(services: Services, user_id: str) -> str:
    user = services.keycloak.find_user(user_id)
    assert user is not None
    return user.id


def deliveries_settled(timeout: float = 10.0) -> None:
    """Wait until every message handed to the delivery pool so far has been sent (or has
    failed): one task per worker, each waiting for all the others, can only all run once
    every task queued before them has finished."""
    workers = background._POOL._max_workers
    barrier = threading.Barrier(workers, timeout=timeout)
    futures = [background._POOL.submit(barrier.wait) for _ in range(workers)]
    for future in futures:
        future.result(timeout=timeout)


def messages_to(inbox: Inbox, account: Typed) -> int:
    """Emails and text messages delivered to the account's contacts so far."""
    texts = inbox.texts_to(account.phone) if account.phone else []
    return len(inbox.mails_to(account.email)) + len(texts)


def audit_of(services: Services, user_id: str, prefix: str = "recovery.") -> list[tuple[str, dict]]:
    """The account's audit events whose action starts with `prefix`, oldest first."""
    with services.reads() as db:
        rows = db.scalars(
            select(AuditEvent)
            .where(AuditEvent.subject == user_id, AuditEvent.action.startswith(prefix))
            .order_by(AuditEvent.id)
        )
        return [(row.action, dict(row.detail or {})) for row in rows]


def sends_counted(services: Services, user_id: str) -> int:
    """Code sends counted against the student (the caps shared with activation)."""
    with services.reads() as db:
        return db.scalar(select(func.count()).where(ContactSend.user_id == user_id)) or 0


def age_sends(services: Services, user_id: str, by: timedelta) -> None:
    """Make the student's earlier code sends `by` older: time passing for the throttles
    per contact, per flow and per student (60 s between codes to one contact, caps)."""
    with services.sessions.begin() as db:
        for send in db.scalars(select(ContactSend).where(ContactSend.user_id == user_id)):
            send.at = send.at - by


def flow_key(app: Flask, flow_id: str | None) -> str:
    """The stored identity of the browser's recovery flow (its code records' key)."""
    engine = recovery_engine(app)
    return engine.key(engine.load_or_start(flow_id))


def code_record(services: Services, key: str) -> ContactVerification:
    """The flow's one code record (real or decoy)."""
    with services.reads() as db:
        return db.scalars(
            select(ContactVerification).where(ContactVerification.flow_key == key)
        ).one()


def move_code_expiry(services: Services, key: str, by: timedelta) -> None:
    """Time passing for the flow's code: its expiry `by` earlier."""
    with services.sessions.begin() as db:
        for row in db.scalars(
            select(ContactVerification).where(ContactVerification.flow_key == key)
        ):
            assert row.code_expires_at is not None
            row.code_expires_at = row.code_expires_at - by
