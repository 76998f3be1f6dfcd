"""Whom a recovery start names, and whether a code may go: only an active, enabled student
the service manages, with a verified contact on the channel. Shown on a gateway fake (the
real realm's accounts are in tests/recovery/test_uniform_start.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import pytest

from provider.config import Settings
from provider.keycloak import (
    ACTIVATION_STATE,
    PHONE_NUMBER,
    PHONE_NUMBER_VERIFIED,
    STATE_ACTIVE,
    STATE_PENDING,
    KeycloakUser,
)
from provider.recovery.lookup import look_up, typed_key
from provider.services import Services
from provider.storage import migrate
from provider.storage.models import Student

PHONE = "+85362345678"


def _user(
    username: str,
    *,
    state: str | None = STATE_ACTIVE,
    enabled: bool = True,
    email_verified: bool = True,
    phone_verified: bool = True,
) -> KeycloakUser:
    attributes: Mapping[str, Sequence[str]] = {
        PHONE_NUMBER: [PHONE],
        PHONE_NUMBER_VERIFIED: ["true" if phone_verified else "false"],
        **({ACTIVATION_STATE: [state]} if state else {}),
    }
    return KeycloakUser(
        id=f"kc-{username}",
        username=username,
        enabled=enabled,
        email=f"{username}@example.edu",
        email_verified=email_verified,
        attributes=attributes,
    )


class FakeGateway:
    """Exact username and email lookups over a few accounts."""

    def __init__(self, *users: KeycloakUser) -> None:
        self.users = users

    def find_user(self, username: str) -> KeycloakUser | None:
        return next((u for u in self.users if u.username == username.lower()), None)

    def find_user_by_email(self, email: str) -> KeycloakUser | None:
        return next((u for u in self.users if (u.email or "") == email.lower()), None)


ACCOUNTS = (
    _user("aa00001"),
    _user("aa00002", state=STATE_PENDING),
    _user("aa00003", enabled=False),
    _user("aa00004", email_verified=False, phone_verified=False),
    _user("aa00005", email_verified=False),
    _user("staff01", state=None),  # not a student the service manages
)


@pytest.fixture
def svc(offline_settings: Settings) -> Services:
    services = Services.assemble(offline_settings)
    migrate.upgrade(services.engine)
    with services.sessions.begin() as db:
        for user in ACCOUNTS[:-1]:
            db.add(Student(user_id=user.username, dob_hash="d" * 64, id_last4_hash="l" * 64))
    return dataclasses.replace(services, keycloak=FakeGateway(*ACCOUNTS))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("typed", "channel", "user_id", "reason"),
    [
        ("zz99999", "email", None, "unknown"),
        ("nobody@example.edu", "phone", None, "unknown"),
        ("staff01", "email", None, "unknown"),  # not managed: not even named in the audit
        ("aa00002", "email", "aa00002", "not_active"),
        ("aa00003", "phone", "aa00003", "disabled"),
        ("aa00004", "email", "aa00004", "no_verified_contact"),
        ("aa00004", "phone", "aa00004", "no_verified_contact"),
        ("aa00005", "email", "aa00005", "no_verified_contact"),
    ],
)
def test_nothing_goes_out_but_the_reason_is_kept_for_the_audit(
    svc: Services, typed: str, channel: str, user_id: str | None, reason: str
) -> None:
    found = look_up(svc, typed, channel)  # type: ignore[arg-type]
    assert (found.user_id, found.keycloak_id, found.contact, found.reason) == (
        user_id,
        None,
        None,
        reason,
    )


@pytest.mark.parametrize(
    ("typed", "channel", "contact"),
    [
        ("aa00001", "email", "aa00001@example.edu"),
        (" AA00001 ", "phone", PHONE),
        ("AA00001@Example.edu", "email", "aa00001@example.edu"),
        ("aa00005", "phone", PHONE),  # its phone is verified, its email not
    ],
)
def test_a_verified_contact_of_an_active_student_gets_the_code(
    svc: Services, typed: str, channel: str, contact: str
) -> None:
    found = look_up(svc, typed, channel)  # type: ignore[arg-type]
    user_id = typed_key(typed).split("@")[0]
    assert (found.user_id, found.keycloak_id, found.contact, found.reason) == (
        user_id,
        f"kc-{user_id}",
        contact,
        "ok",
    )


def test_what_was_typed_is_counted_without_spaces_or_case() -> None:
    assert typed_key(" Dc 12345 ") == "dc12345"
    assert typed_key("S@Example.EDU") == "s@example.edu"
    assert len(typed_key("x" * 400)) == 254
