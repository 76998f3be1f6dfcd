"""A student's audit events in plain words, for the help desk's timeline.

One mapping from audit action to a translated sentence, one from the few detail values
that are codes (a channel, a reason) to words, and who acted in words too. Times are in
the university's time zone (`UMPASS_TIME_ZONE`), the one the student and the desk live
in, never UTC. The details never hold a secret (see `provider.audit`); an action or value
not listed here is shown as it is, so a new event is never hidden, only plainer once it
is listed. The CSV export keeps the raw names and UTC (`student.describe`): it is read by
programs and by people who grep.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_datetime, get_timezone_location
from flask_babel import get_locale
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
    "step.policies": _l("Activation: shown the policies"),
    "step.contacts": _l("Activation: accepted the policies"),
    "step.password": _l("Activation: confirmed the contacts"),
    "contacts.send_refused": _l("Activation: a contact code was not sent"),
    "step.done": _l("Activation: chose a password"),
    "account.activated": _l("Account activated"),
    "policy.accepted": _l("Accepted a policy"),
    "step.policies.reopened": _l("Activation: sent back to the policies (a new version)"),
    "flow.restarted": _l("Activation started again"),
    "sign_in.asserted": _l("Sent back to sign-in, signed in"),
    "recovery.code_sent": _l("Recovery started: a code was sent"),
    "recovery.code_not_sent": _l("Recovery started: no code was sent"),
    "recovery.code_failed": _l("Recovery: a wrong code"),
    "recovery.birth_date_failed": _l("Recovery: the date of birth did not match"),
    "recovery.locked": _l("Recovery: locked after wrong tries"),
    "recovery.code_proven": _l("Recovery: the code was right"),
    "recovery.step.code": _l("Recovery: asked for the code"),
    "recovery.step.birth-date": _l("Recovery: asked for the date of birth"),
    "recovery.step.choose": _l("Recovery: offered to unlock or set a new password"),
    "recovery.step.new-password": _l("Recovery: chose a new password"),
    "recovery.unlocked": _l("Account unlocked by the student (recovery)"),
    "recovery.password_reset": _l("Password reset by the student (recovery)"),
    "recovery.restarted": _l("Recovery started again"),
    "helpdesk.viewed": _l("Help desk looked at this page"),
    "helpdesk.not_found": _l("Help desk looked for this user ID"),
    "helpdesk.code_reissued": _l("Help desk issued a new activation code"),
    "helpdesk.event_sent_again": _l("An undelivered event was sent again to a downstream system"),
    "helpdesk.lockout_cleared": _l("Help desk cleared the lockouts"),
    "helpdesk.back_to_pending": _l("Help desk set the account back to pending"),
}

# The account's state and a code's status, as the student's page shows them.
STATES: dict[str, LazyString] = {
    "pending": _l("pending"),
    "active": _l("active"),
    "usable": _l("usable"),
    "used": _l("used"),
    "revoked": _l("revoked"),
    "expired": _l("expired"),
}


def state(name: str | None) -> str:
    return str(STATES[name]) if name in STATES else (name or "")


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
    # helpdesk.back_to_pending
    "wrong_person": _l("given to the wrong person"),
    "identity_in_doubt": _l("identity in doubt"),
    "student_asked": _l("the student asked"),
}


def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def zone_name(tz: tzinfo) -> str:
    """The zone as people say it, in the page's language, and its IANA name:
    "Macao SAR China Time (Asia/Macau)"."""
    return f"{get_timezone_location(tz, locale=get_locale())} ({tz})"


def local(at: datetime, tz: tzinfo, pattern: str = "yyyy-MM-dd HH:mm") -> str:
    """`at` (aware, or naive UTC as the database keeps it) on the wall clock of `tz`."""
    return format_datetime(at, pattern, tzinfo=tz, locale=get_locale())


def _when(value: Any, tz: tzinfo) -> str:
    try:
        return local(datetime.fromisoformat(str(value)), tz)
    except ValueError:
        return str(value)


# Detail keys whose value reads better inside a sentence.
KEYS: dict[str, Callable[[Any, tzinfo], str]] = {
    "until": lambda v, tz: _("until %(time)s", time=_when(v, tz)),
    "expires_at": lambda v, tz: _("expires %(time)s", time=_when(v, tz)),
    "in_a_row": lambda v, tz: _("lock %(n)s in a row", n=v),
    "intake": lambda v, tz: _("intake %(name)s", name=v),
    "recovered": lambda v, tz: _("finishing what an earlier try began"),
    "count": lambda v, tz: _("%(n)s revoked", n=v),
    # policy.accepted: which policy (its id, as the CSV export names it), version, when.
    "policy": lambda v, tz: str(v),
    "version": lambda v, tz: _("version %(version)s", version=v),
    "at": lambda v, tz: _("at %(time)s", time=_when(str(v).replace("Z", "+00:00"), tz)),
}
# Details that say only "as usual": left out.
SILENT: dict[str, Any] = {"reason": "ok", "recovered": False}


def what(action: str) -> str:
    return str(ACTIONS[action]) if action in ACTIONS else action


def who(actor: str) -> str:
    """The actor in words: the student, the service itself, or the staff member by name."""
    if actor == audit.STUDENT:
        return _("The student")
    if actor == audit.SYSTEM:
        return _("The service")
    if actor.startswith("staff:"):
        return _("Help desk: %(name)s", name=actor.removeprefix("staff:"))
    return actor


def details(detail: dict[str, Any] | None, tz: tzinfo) -> str:
    words = []
    for key, value in sorted((detail or {}).items()):
        if key in SILENT and value == SILENT[key]:
            continue
        if key in KEYS:
            words.append(KEYS[key](value, tz))
        elif isinstance(value, str) and value in VALUES:
            words.append(str(VALUES[value]))
        else:
            words.append(f"{key}={value}")
    return "; ".join(words)


def row(
    at: datetime, actor: str, action: str, detail: dict[str, Any] | None, tz: tzinfo
) -> dict[str, str]:
    """One line of the timeline: when (on the local clock), who, what happened, details."""
    return {
        "at": local(at, tz, "yyyy-MM-dd HH:mm:ss"),
        "actor": actor,
        "who": who(actor),
        "action": action,
        "what": what(action),
        "detail": details(detail, tz),
    }


def lines(events: list[AuditEvent], enrolled: Student | None, tz: tzinfo) -> list[dict[str, str]]:
    """The timeline, newest first; its last line, when the Registry's data arrived."""
    rows = [row(e.at, e.actor, e.action, e.detail, tz) for e in events]
    if enrolled is not None:
        intake = {"intake": enrolled.intake} if enrolled.intake else {}
        rows.append(row(enrolled.created_at, audit.SYSTEM, IMPORTED, intake, tz))
    return rows
