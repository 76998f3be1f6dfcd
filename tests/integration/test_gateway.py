"""The gateway against the real Keycloak: passwords, attributes, contacts, lockouts."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from keycloak import KeycloakAdmin

from provider.config import Settings
from provider.keycloak import (
    ACCEPTED_POLICIES,
    ACTIVATED_AT,
    ACTIVATION_STATE,
    BROKER_TICKET,
    PHONE_NUMBER,
    PHONE_NUMBER_VERIFIED,
    STATE_ACTIVE,
    STATE_PENDING,
    TICKET_OPEN,
    Conflict,
    InvalidValue,
    KeycloakGateway,
    PasswordRejected,
    UserNotFound,
)
from tests.support.accounts import set_attributes
from tests.support.inbox import new_mobile
from tests.support.keycloak_login import sign_in
from tests.support.policies import accepted_first_versions

GOOD_PASSWORD = "orbit lantern velvet 1987"


def _sign_in(settings: Settings, username: str, password: str):
    return sign_in(settings.keycloak.url, settings.keycloak.realm, username, password)


def _mark_active(admin: KeycloakAdmin, user_id: str) -> None:
    """Flip the attribute only (the realm's browser flow keeps pending accounts away
    from the password form, whatever their password)."""
    set_attributes(
        admin,
        user_id,
        # With the current policies accepted: the realm's policy gate stops anyone else.
        {ACTIVATION_STATE: [STATE_ACTIVE], ACCEPTED_POLICIES: accepted_first_versions()},
    )


def test_password_set_by_gateway_works_in_a_real_login(
    gateway: KeycloakGateway, settings: Settings, pending_user: str, admin: KeycloakAdmin
) -> None:
    username = gateway.get_user(pending_user).username
    gateway.set_password(pending_user, GOOD_PASSWORD)
    pending = _sign_in(settings, username, GOOD_PASSWORD)
    assert not pending.ok and "/broker/umpass-activation/login" in pending.location
    _mark_active(admin, pending_user)
    result = _sign_in(settings, username, GOOD_PASSWORD)
    assert result.ok, "login failed or asked for a required action"
    assert result.tokens and result.tokens["access_token"]
    credentials = admin.get_credentials(pending_user)
    assert [c["type"] for c in credentials] == ["password"]
    assert admin.get_user(pending_user)["requiredActions"] == []  # not temporary


def test_wrong_password_is_refused_at_login(
    gateway: KeycloakGateway, settings: Settings, pending_user: str
) -> None:
    gateway.set_password(pending_user, GOOD_PASSWORD)
    username = gateway.get_user(pending_user).username
    assert not _sign_in(settings, username, GOOD_PASSWORD + "x").ok


@pytest.mark.parametrize(
    ("password", "sentence"),
    [
        ("short", "Your password is too short: use at least 12 characters."),
        ("1qaz2wsx3edc", "That password is too common and easy to guess. Choose another one."),
        ("x" * 129, "Your password is too long: use at most 128 characters."),
    ],
)
def test_policy_refusal_is_a_plain_sentence(
    gateway: KeycloakGateway, pending_user: str, password: str, sentence: str
) -> None:
    with pytest.raises(PasswordRejected) as caught:
        gateway.set_password(pending_user, password)
    assert caught.value.reason == sentence
    assert caught.value.error_key.startswith("invalidPassword")


def test_password_equal_to_username_or_email_is_refused(
    gateway: KeycloakGateway, admin: KeycloakAdmin
) -> None:
    # User IDs are 7 characters, below the length rule: use a long one to reach notUsername.
    username = f"long-user-name-{secrets.token_hex(3)}"
    email = f"{username}@example.edu"
    user_id = gateway.create_user(username, email=email, first_name="T", last_name="S")
    with pytest.raises(PasswordRejected) as caught:
        gateway.set_password(user_id, username)
    assert caught.value.reason == "Your password cannot be your user ID."
    with pytest.raises(PasswordRejected) as caught:
        gateway.set_password(user_id, email)
    assert caught.value.reason == "Your password cannot be your email address."
    assert admin.get_credentials(user_id) == []


def test_a_write_keeps_everything_else(
    gateway: KeycloakGateway, pending_user: str, admin: KeycloakAdmin
) -> None:
    # Keycloak's PUT replaces the whole user: each write reads, merges and writes it back.
    set_attributes(admin, pending_user, {"accepted_policies": ["it-aup@3:2026-11-26T00:00:00Z"]})
    before = gateway.get_user(pending_user)
    gateway.set_phone(pending_user, "+85366112233")
    after = gateway.get_user(pending_user)
    assert after.attributes[PHONE_NUMBER] == ["+85366112233"]
    assert after.attributes["accepted_policies"] == ["it-aup@3:2026-11-26T00:00:00Z"]
    assert after.attributes[ACTIVATION_STATE] == before.attributes[ACTIVATION_STATE]
    assert (after.email, after.first_name, after.last_name, after.enabled) == (
        before.email,
        before.first_name,
        before.last_name,
        before.enabled,
    )
    gateway.set_email(pending_user, f"kept.{secrets.token_hex(3)}@example.edu")
    after = gateway.get_user(pending_user)
    assert after.attributes[PHONE_NUMBER] == ["+85366112233"]
    assert after.attributes["accepted_policies"] == ["it-aup@3:2026-11-26T00:00:00Z"]
    assert (after.first_name, after.last_name) == (before.first_name, before.last_name)


def test_activation_removes_a_ticket_left_open_and_keeps_the_rest(
    gateway: KeycloakGateway, pending_user: str, admin: KeycloakAdmin
) -> None:
    set_attributes(admin, pending_user, {BROKER_TICKET: [TICKET_OPEN]})
    before = gateway.get_user(pending_user)
    assert gateway.activate(pending_user, GOOD_PASSWORD, attributes={})
    after = gateway.get_user(pending_user)
    assert BROKER_TICKET not in after.attributes
    assert after.attributes[PHONE_NUMBER] == before.attributes[PHONE_NUMBER]
    assert (after.email, after.first_name, after.last_name) == (
        before.email,
        before.first_name,
        before.last_name,
    )


def test_parallel_writes_to_one_account_lose_nothing(
    gateway: KeycloakGateway, pending_user: str
) -> None:
    # Two writes of different fields (the email; the phone) start together, round after
    # round: without the per-account lock both read the account before either writes, and
    # the second write puts back the field the first had just changed.
    start = threading.Barrier(2)

    def together(write: Callable[[str, str], None], value: str) -> None:
        start.wait(timeout=30)
        write(pending_user, value)

    tag = secrets.token_hex(3)
    with ThreadPoolExecutor(max_workers=2) as pool:
        for i in range(8):
            email, phone = f"round{i}.{tag}@example.edu", new_mobile()
            futures = [
                pool.submit(together, gateway.set_email, email),
                pool.submit(together, gateway.set_phone, phone),
            ]
            for future in futures:
                future.result()  # re-raises anything a thread hit
            after = gateway.get_user(pending_user)
            assert (after.email, after.attribute(PHONE_NUMBER)) == (email, phone), f"round {i}"
            assert after.attribute(ACTIVATION_STATE) == STATE_PENDING


def test_verified_contacts_and_activation(gateway: KeycloakGateway, pending_user: str) -> None:
    gateway.set_email(pending_user, "new.address@example.edu")
    gateway.set_phone(pending_user, "+85366112233")
    user = gateway.get_user(pending_user)
    assert (user.email, user.email_verified) == ("new.address@example.edu", True)
    assert user.attributes[PHONE_NUMBER] == ["+85366112233"]
    assert user.attributes[PHONE_NUMBER_VERIFIED] == ["true"]
    assert gateway.activate(pending_user, GOOD_PASSWORD, attributes={})
    first = gateway.get_user(pending_user)
    assert first.activation_state == STATE_ACTIVE and first.attribute(ACTIVATED_AT)
    # A second activation writes nothing: the first activation time stays.
    assert not gateway.activate(pending_user, GOOD_PASSWORD + " again", attributes={})
    assert gateway.get_user(pending_user).attribute(ACTIVATED_AT) == first.attribute(ACTIVATED_AT)


def test_find_user_ignores_case_and_spaces(gateway: KeycloakGateway, pending_user: str) -> None:
    username = gateway.get_user(pending_user).username
    found = gateway.find_user(f"  {username.upper()} ")
    assert found is not None and found.id == pending_user
    assert gateway.find_user("nobody-like-this") is None
    assert gateway.find_user("   ") is None


def test_unknown_user_id_is_typed(gateway: KeycloakGateway) -> None:
    with pytest.raises(UserNotFound):
        gateway.get_user("00000000-0000-0000-0000-000000000000")


def test_create_user_is_idempotent(gateway: KeycloakGateway, pending_user: str) -> None:
    user = gateway.get_user(pending_user)
    assert gateway.create_user(user.username, email=user.email) == pending_user


def test_clear_lockout_after_failed_logins(
    gateway: KeycloakGateway, settings: Settings, pending_user: str, admin: KeycloakAdmin
) -> None:
    _mark_active(admin, pending_user)
    gateway.set_password(pending_user, GOOD_PASSWORD)
    username = gateway.get_user(pending_user).username
    for _ in range(5):
        assert not _sign_in(settings, username, "wrong password entirely").ok
    assert gateway.lockout_status(pending_user)["disabled"] is True
    assert not _sign_in(settings, username, GOOD_PASSWORD).ok  # locked, even with the right one
    gateway.clear_lockout(pending_user)
    assert gateway.lockout_status(pending_user)["disabled"] is False
    assert _sign_in(settings, username, GOOD_PASSWORD).ok


def test_a_write_never_lifts_a_brute_force_lock(
    gateway: KeycloakGateway, settings: Settings, pending_user: str, admin: KeycloakAdmin
) -> None:
    """A PUT carrying `enabled: true` lifts Keycloak's lock as a side effect: the gateway's
    writes leave `enabled` out, so only `clear_lockout` (recovery, the help desk) unlocks."""
    _mark_active(admin, pending_user)
    gateway.set_password(pending_user, GOOD_PASSWORD)
    username = gateway.get_user(pending_user).username
    for _ in range(5):
        assert not _sign_in(settings, username, "wrong password entirely").ok
    assert gateway.lockout_status(pending_user)["disabled"] is True
    gateway.set_phone(pending_user, new_mobile(), verified=True)
    gateway.accept_policies(pending_user, ["it-acceptable-use@2027-01:2026-12-03T10:00:00Z"])
    assert gateway.lockout_status(pending_user)["disabled"] is True
    assert not _sign_in(settings, username, GOOD_PASSWORD).ok


def test_realm_password_policy_as_tips(gateway: KeycloakGateway) -> None:
    tips = gateway.password_policy().tips()
    assert tips[0].startswith("Use at least 12 characters")
    assert "Do not use your user ID or email address." in tips
    assert "Avoid common passwords: they are refused." in tips


def test_admin_token_is_reused_across_calls_and_threads(
    settings: Settings, pending_user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keycloak import KeycloakOpenIDConnection

    fetched: list[int] = []
    original = KeycloakOpenIDConnection.get_token

    def counting_get_token(self: KeycloakOpenIDConnection) -> None:
        fetched.append(1)
        original(self)

    monkeypatch.setattr(KeycloakOpenIDConnection, "get_token", counting_get_token)
    gateway = KeycloakGateway(settings.keycloak)  # a fresh pool, no token yet
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                assert gateway.get_user(pending_user).id == pending_user
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    # 40 calls from 8 threads: at most one token per pooled connection.
    assert 1 <= len(fetched) <= settings.keycloak.pool_size


def test_student_input_that_cannot_name_a_user(gateway: KeycloakGateway) -> None:
    assert gateway.find_user("s" * 40_000) is None  # would be HTTP 414 at Keycloak
    with pytest.raises(UserNotFound):
        gateway.get_user("../../clients")
    with pytest.raises(UserNotFound):
        gateway.set_password("not-a-uuid", "orbit lantern velvet 1987")


def test_profile_refusal_is_a_typed_invalid_value(
    gateway: KeycloakGateway, pending_user: str
) -> None:
    before = gateway.get_user(pending_user).attributes[PHONE_NUMBER]
    with pytest.raises(InvalidValue) as caught:
        gateway.set_phone(pending_user, "12345")  # not E.164: the user profile refuses it
    assert caught.value.field_name == PHONE_NUMBER
    assert gateway.get_user(pending_user).attributes[PHONE_NUMBER] == before


def test_create_user_refuses_a_different_person_with_the_same_username(
    gateway: KeycloakGateway, pending_user: str
) -> None:
    username = gateway.get_user(pending_user).username
    with pytest.raises(Conflict):
        gateway.create_user(username, email="someone.else@example.edu")


def test_every_activation_removes_an_earlier_link_to_the_activation_provider(
    gateway: KeycloakGateway, pending_user: str, admin: KeycloakAdmin
) -> None:
    """An account set back to pending keeps the link its first activation made; activating
    it again without a sign-in waiting must still drop it, or whoever can make the provider
    assert that link's subject signs in as the account with no check at all."""
    username = gateway.get_user(pending_user).username
    admin.add_user_social_login(pending_user, "umpass-activation", "umpass.earlier", username)
    assert gateway.activate(pending_user, GOOD_PASSWORD, attributes={})
    assert admin.get_user_social_logins(pending_user) == []
