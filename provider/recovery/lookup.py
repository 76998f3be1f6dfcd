"""Whom a recovery start names, and whether a code may go to them.

Only an active student the service manages, enabled, with a *verified* contact on the
chosen channel, gets a code. Everyone else (unknown, pending, disabled, staff, which the
service's credential cannot even see, or no verified contact there) gets nothing, and the
page the student sees does not say which: the reason is for the audit only.
"""

from __future__ import annotations

from dataclasses import dataclass

from provider.flows.state import Channel
from provider.keycloak import PHONE_NUMBER, PHONE_NUMBER_VERIFIED, STATE_ACTIVE, KeycloakUser
from provider.proofing import normalize_user_id
from provider.services import Services
from provider.storage.models import Student


@dataclass(frozen=True)
class Found:
    user_id: str | None  # the account's user ID when one was found (for the audit), else None
    keycloak_id: str | None  # set only when a code may go out
    contact: str | None  # the verified contact the code goes to
    reason: str  # "ok", or why nothing goes out (audit only)


def typed_key(typed: str) -> str:
    """What was typed, as the budgets count it: spaces gone, lower case."""
    return "".join(typed.split()).lower()[:254]


def canonical(typed: str, user_id_length: int) -> str:
    """What was typed, as the account it can name: an email address lower-cased, a user ID
    as the lookup reads it (case, spaces and anything past its length ignored), else the
    typing itself. Budgets and the wrong-try counter count this, so no spelling of the
    same account buys a fresh one."""
    key = typed_key(typed)
    if "@" in key:
        return key
    return normalize_user_id(key, user_id_length) or key


def look_up(svc: Services, typed: str, channel: Channel) -> Found:
    key = canonical(typed, svc.settings.user_id_length)
    user: KeycloakUser | None
    if "@" in key:
        user = svc.keycloak.find_user_by_email(key)
    else:
        user_id = normalize_user_id(key, svc.settings.user_id_length)
        user = svc.keycloak.find_user(user_id) if user_id else None
    if user is None:
        return Found(None, None, None, "unknown")
    user_id = user.username.lower()
    with svc.reads() as db:
        managed = db.get(Student, user_id) is not None
    if not managed:
        return Found(None, None, None, "unknown")
    if user.activation_state != STATE_ACTIVE:
        return Found(user_id, None, None, "not_active")
    if not user.enabled:
        return Found(user_id, None, None, "disabled")
    contact = verified_contact(user, channel)
    if contact is None:
        return Found(user_id, None, None, "no_verified_contact")
    return Found(user_id, user.id, contact, "ok")


def look_up_again(svc: Services, keycloak_id: str, user_id: str, channel: Channel) -> Found:
    """The account a flow found at its start, as it is now (for "Send a new code")."""
    user = svc.keycloak.get_user(keycloak_id)
    if user.activation_state != STATE_ACTIVE or not user.enabled:
        return Found(user_id, None, None, "not_active")
    contact = verified_contact(user, channel)
    if contact is None:
        return Found(user_id, None, None, "no_verified_contact")
    return Found(user_id, user.id, contact, "ok")


def verified_contact(user: KeycloakUser, channel: Channel) -> str | None:
    if channel == "email":
        return user.email if user.email and user.email_verified else None
    phone = user.attribute(PHONE_NUMBER)
    return phone if phone and user.attribute(PHONE_NUMBER_VERIFIED) == "true" else None
