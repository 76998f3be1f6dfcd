"""A student's audit events in plain words, for the help desk's timeline.

One mapping from audit action to a translated sentence, and one from the few detail
values that are codes (a channel, a reason) to words. The details never hold a secret
(see `provider.audit`); an action or value not listed here is shown as it is, so a new
event is never hidden, only plainer once it is listed. The CSV export keeps the raw
names (`student.describe`): it is read by programs and by people who grep.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel.speaklater import LazyString

from provider import audit
from provider.storage.models import AuditEvent, Student

IMPORTED = "student.imported"  # not an audit row: the students table's own first line

ACTIONS: dict[str, LazyString] = {
    IMPORTED: _l("Imported from the Registry"),
    "code.issued": _l("Activation code issued"),
    "code.revoked": _l("Activation code revoked"),
    "identify.ok": _l("Activation started: the details matched"),
    "identify.failed": _l("Activation: the details did not match"),
    audit.LOCK_STARTED: _l("Activation: locked after wrong details"),
    "identify.locked": _l("Activation: tried while locked"),
    "step.contacts": _l("Activation: accepted the policies"),
    "step.password": _l("Activation: confirmed the contacts"),
    "contacts.send_refused": _l("Activation: a contact code was not sent"),
    "account.activated": _l("Account activated"),
    "flow.restarted": _l("Activation started again"),
    "sign_in.asserted": _l("Sent back to sign-in, signed in"),
    "recovery.code_sent": _l("Recovery started: a code was sent"),
    "recovery.code_not_sent": _l("Recovery started: no code was sent"),
    "recovery.code_failed": _l("Recovery: a wrong code"),
    "recovery.birth_date_failed": _l("Recovery: the date of birth did not match"),
    "recovery.locked": _l("Recovery: locked after wrong tries"),
    "recovery.code_proven": _l("Recovery: the code was right"),
    "recovery.step.birth-date": _l("Recovery: asked for the date of birth"),
    "recovery.step.choose": _l("Recovery: offered to unlock or set a new password"),
    "recovery.step.new-password": _l("Recovery: chose a new password"),
    "recovery.unlocked": _l("Account unlocked by the student (recovery)"),
    "recovery.password_reset": _l("Password reset by the student (recovery)"),
    "recovery.restarted": _l("Recovery started again"),
    "helpdesk.viewed": _l("Help desk looked at this page"),
    "helpdesk.not_found": _l("Help desk looked for this user ID"),
    "helpdesk.code_reissued": _l("Help desk issued a new activation code"),
    "helpdesk.lockout_cleared": _l("Help desk cleared the lockouts"),
}

# Detail values that are names: channels and the reasons the service records.
VALUES: dict[str, LazyString] = {
    "email": _l("by email"),
    "phone": _l("by text message"),
    # recovery.code_not_sent
    "unknown": _l("no account found"),
    "not_active": _l("the account is not active"),
    "disabled": _l("the account is disabled"),
    "no_verified_contact": _l("no verified contact there"),
    "throttled": _l("too many codes sent already"),
    "contact_changed": _l("the contact changed since the start"),
    # recovery.code_failed
    "CodeWrong": _l("wrong code"),
    "CodeExpired": _l("code expired"),
    "TooManyWrong": _l("too many wrong tries on that code"),
    # identify.failed, contacts.send_refused
    "challenge": _l("the anti-robot check failed"),
    "student_cap": _l("the student's daily limit"),
    "sms_budget": _l("the day's text-message budget"),
}


def _when(value: Any) -> str:
    try:
        return datetime.fromisoformat(str(value)).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return str(value)


# Detail keys whose value reads better inside a sentence.
KEYS: dict[str, Callable[[Any], str]] = {
    "until": lambda v: _("until %(time)s", time=_when(v)),
    "expires_at": lambda v: _("expires %(time)s", time=_when(v)),
    "in_a_row": lambda v: _("lock %(n)s in a row", n=v),
    "intake": lambda v: _("intake %(name)s", name=v),
    "recovered": lambda v: _("finishing what an earlier try began"),
}
# Details that say only "as usual": left out.
SILENT: dict[str, Any] = {"reason": "ok", "recovered": False}


def what(action: str) -> str:
    return str(ACTIONS[action]) if action in ACTIONS else action


def details(detail: dict[str, Any] | None) -> str:
    words = []
    for key, value in sorted((detail or {}).items()):
        if key in SILENT and value == SILENT[key]:
            continue
        if key in KEYS:
            words.append(KEYS[key](value))
        elif isinstance(value, str) and value in VALUES:
            words.append(str(VALUES[value]))
        else:
            words.append(f"{key}={value}")
    return "; ".join(words)


def row(at: datetime, actor: str, action: str, detail: dict[str, Any] | None) -> dict[str, str]:
    """One line of the timeline: when, who, what happened, and its details."""
    return {
        "at": at.strftime("%Y-%m-%d %H:%M:%S"),
        "actor": actor,
        "action": action,
        "what": what(action),
        "detail": details(detail),
    }


def lines(events: list[AuditEvent], enrolled: Student | None) -> list[dict[str, str]]:
    """The timeline, newest first; its last line, when the Registry's data arrived."""
    rows = [row(e.at, e.actor, e.action, e.detail) for e in events]
    if enrolled is not None:
        intake = {"intake": enrolled.intake} if enrolled.intake else {}
        rows.append(row(enrolled.created_at, audit.SYSTEM, IMPORTED, intake))
    return rows
