"""What the help desk sees of one student, and what it may do: never a secret.

The timeline comes from the audit log (imported, codes issued and revoked, identify
attempts and lockouts, steps reached, activated, recoveries, help-desk actions) plus the
codes' status and the lockouts (the service's identify and recovery locks, Keycloak's
brute-force lock).
No code, date of birth, ID digits or full contact is ever shown: contacts are masked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select

from provider import audit, events
from provider.activation_codes import IssuedCode, issue_code
from provider.contact_input import mask_email, mask_phone
from provider.events import outbox
from provider.guards import lockout
from provider.keycloak import PHONE_NUMBER, KeycloakUser
from provider.services import Services
from provider.storage.models import ActivationCode, AuditEvent, IdentifyLockout, Student

TIMELINE_LIMIT = 200


@dataclass
class CodeLine:
    issued_at: datetime
    expires_at: datetime
    status: str  # usable | used | revoked | expired


@dataclass
class StudentView:
    user_id: str
    enrolled: Student | None
    account: KeycloakUser | None
    codes: list[CodeLine] = field(default_factory=list)
    events: list[AuditEvent] = field(default_factory=list)
    service_lock_until: datetime | None = None
    service_failures: int = 0
    recovery_lock_until: datetime | None = None
    recovery_failures: int = 0
    keycloak_locked: bool = False

    @property
    def masked_email(self) -> str:
        return mask_email(self.account.email) if self.account and self.account.email else ""

    @property
    def masked_phone(self) -> str:
        phone = self.account.attribute(PHONE_NUMBER) if self.account else None
        return mask_phone(phone) if phone else ""


def look_up(svc: Services, user_id: str, now: datetime | None = None) -> StudentView:
    now = now or datetime.now(UTC)
    with svc.reads() as session:
        enrolled = session.get(Student, user_id)
        codes = session.scalars(
            select(ActivationCode)
            .where(ActivationCode.user_id == user_id)
            .order_by(ActivationCode.id)
        ).all()
        events = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.subject == user_id)
            .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
            .limit(TIMELINE_LIMIT)
        ).all()
        lock = session.get(IdentifyLockout, user_id)
        recovery_lock = session.get(IdentifyLockout, lockout.recovery_key(user_id))
    account = svc.keycloak.find_user(user_id)
    view = StudentView(user_id=user_id, enrolled=enrolled, account=account, events=list(events))
    view.codes = [CodeLine(c.issued_at, c.expires_at, _status(c, now)) for c in codes]
    view.service_lock_until, view.service_failures = _lock_state(lock, now)
    view.recovery_lock_until, view.recovery_failures = _lock_state(recovery_lock, now)
    if account is not None:
        view.keycloak_locked = bool(svc.keycloak.lockout_status(account.id).get("disabled"))
    return view


def _lock_state(row: IdentifyLockout | None, now: datetime) -> tuple[datetime | None, int]:
    """When the lock ends (None when not locked now), and the failures counted since."""
    if row is None:
        return None, 0
    locked = row.locked_until is not None and row.locked_until > now
    return (row.locked_until if locked else None), row.failures


def _status(code: ActivationCode, now: datetime) -> str:
    if code.used_at:
        return "used"
    if code.revoked_at:
        return "revoked"
    return "expired" if code.expires_at <= now else "usable"


def reissue(svc: Services, user_id: str, staff: str, days: int = 30) -> IssuedCode:
    """A new code (the old one revoked), to be shown once to the staff member."""
    with svc.sessions.begin() as session:
        issued = issue_code(
            session, svc.hasher, user_id, ttl=timedelta(days=days), actor=f"staff:{staff}"
        )
        audit.record(session, f"staff:{staff}", "helpdesk.code_reissued", user_id)
        # For downstream (never the code): with the new code, or not at all.
        outbox.record(
            session,
            events.CODE_REISSUED,
            user_id,
            expires_at=issued.expires_at.isoformat(),
            changed=["activation_code"],
        )
    return issued


def clear_lockouts(svc: Services, view: StudentView, staff: str) -> None:
    """Every lock: the service's identify and recovery locks, Keycloak's brute-force lock."""
    keys = [view.user_id, lockout.recovery_key(view.user_id)]
    if view.account is not None and view.account.email:
        # Recovery started by the email address counts under that typing's own key.
        keys.append(lockout.recovery_typed_key(svc.hasher, view.account.email.lower()))
    with svc.sessions.begin() as session:
        session.execute(delete(IdentifyLockout).where(IdentifyLockout.user_id.in_(keys)))
        audit.record(session, f"staff:{staff}", "helpdesk.lockout_cleared", view.user_id)
        # With the service's locks it clears, like the audit: Keycloak's lock follows (an
        # idempotent write; if it fails the desk sees an error and clears again).
        outbox.record(
            session,
            events.UNLOCKED,
            view.user_id,
            keycloak_id=view.account.id if view.account is not None else None,
            changed=["lockout"],
            by="helpdesk",
        )
    if view.account is not None:
        svc.keycloak.clear_lockout(view.account.id)


def describe(event: AuditEvent) -> dict[str, Any]:
    """An audit event as a row of the timeline or the export (details never hold secrets)."""
    return {
        "at": event.at.strftime("%Y-%m-%d %H:%M:%S"),
        "actor": event.actor,
        "action": event.action,
        "subject": event.subject or "",
        "detail": " ".join(f"{k}={v}" for k, v in sorted((event.detail or {}).items())),
    }
