"""The help desk's "back to pending": an active account must be activated again.

For an account handed to the wrong person, or a student whose identity is in doubt: the
account becomes pending (no grant gives it a token any more, see the flows) with its
contacts unproven (recovery takes none of them), every session and offline token ends,
any open activation code is revoked, and downstream hears `student.back_to_pending`. The
student activates again with a new code from the desk, proving the contacts again.

Order: Keycloak first, then the service's record (audit, codes, event) in one
transaction. A crash between the two leaves the account pending, the safe side (nobody
signs in), with no event yet; the student's page then sees the last activation still
unanswered (`unfinished`) and offers the button again, and the second run rewrites the
same state (idempotent) before writing the record. The other order would tell downstream
of a change that Keycloak may never make.
"""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_babel.speaklater import LazyString
from sqlalchemy import select

from provider import audit, events
from provider.activation_codes import revoke_codes
from provider.events import outbox
from provider.helpdesk.student import StudentView
from provider.keycloak import STATE_ACTIVE, STATE_PENDING
from provider.services import Services
from provider.storage.models import AuditEvent

ACTION = "helpdesk.back_to_pending"
_ACTIVATED = "account.activated"

# Why, as the desk picks it: a word for the audit and the event, never free text (which
# would invite a name or an ID number into the log).
REASONS: dict[str, LazyString] = {
    "wrong_person": _l("The account was given to the wrong person"),
    "identity_in_doubt": _l("The student's identity is in doubt"),
    "student_asked": _l("The student asked for it"),
}


def unfinished(svc: Services, view: StudentView) -> bool:
    """Pending in Keycloak while the service's last word is still "activated": a back to
    pending whose record a crash cut off (or a change made in Keycloak's own console)."""
    if view.account is None or view.account.activation_state != STATE_PENDING:
        return False
    with svc.reads() as db:
        last = db.scalar(
            select(AuditEvent.action)
            .where(AuditEvent.subject == view.user_id, AuditEvent.action.in_((_ACTIVATED, ACTION)))
            .order_by(AuditEvent.id.desc())
            .limit(1)
        )
    return last == _ACTIVATED


def offered(svc: Services, view: StudentView) -> bool:
    if view.account is None:
        return False
    return view.account.activation_state == STATE_ACTIVE or unfinished(svc, view)


def set_back_to_pending(svc: Services, view: StudentView, staff: str, reason: str) -> None:
    """Keycloak's state and sessions first, then the record (see the module's doc)."""
    if reason not in REASONS:
        raise ValueError(f"unknown reason {reason!r}")
    account = view.account
    if account is None:
        raise ValueError("no account to set back to pending")
    svc.keycloak.set_back_to_pending(account.id)
    actor = f"staff:{staff}"
    with svc.sessions.begin() as session:
        revoke_codes(session, view.user_id, actor=actor)
        audit.record(session, actor, ACTION, view.user_id, reason=reason)
        outbox.record(
            session,
            events.BACK_TO_PENDING,
            view.user_id,
            keycloak_id=account.id,
            activation_state=STATE_PENDING,
            changed=["activation_state", "sessions", "verified_contacts"],
            by="helpdesk",
            reason=reason,
        )
