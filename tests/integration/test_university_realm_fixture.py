"""The university-realm fixture itself, on the bare realm (before our extension is applied).

The realm's own sign-ins work (password then OTP; through the partner identity provider),
its staff account carries declared and unmanaged attributes, and the snapshot compares
equal with itself and names a changed setting in one line.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from keycloak import KeycloakAdmin

from tests.conftest import KeycloakUnderTest, master_admin
from tests.support import university_realm
from tests.support.realm_changes import RealmChanges
from tests.support.totp import hotp, totp, totp_from_base32
from tests.support.university_realm import (
    PASSWORD_POLICY,
    UniversityRealm,
    _fresh_totp,
    _keycloak_style_secret,
    build_university_realm,
    realm_snapshot,
    sign_in_through_partner,
    sign_in_with_password_and_otp,
    snapshot_diff,
)


@pytest.fixture(scope="module")
def uni(keycloak_server: KeycloakUnderTest, kc: KeycloakAdmin) -> Iterator[UniversityRealm]:
    built = build_university_realm(kc, keycloak_server.url, f"uni-{secrets.token_hex(3)}")
    yield built
    built.delete(kc)


@pytest.fixture(scope="module")
def uni_admin(keycloak_server: KeycloakUnderTest, uni: UniversityRealm) -> KeycloakAdmin:
    admin = master_admin(keycloak_server)
    admin.change_current_realm(uni.name)
    return admin


@pytest.fixture
def uni_changes(uni_admin: KeycloakAdmin, uni: UniversityRealm) -> Iterator[RealmChanges]:
    """What a test changes in the module's realm, undone when it ends, passed or failed."""
    changes = RealmChanges(uni_admin, uni.name)
    yield changes
    changes.undo_all()


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


# --- without Keycloak -------------------------------------------------------------------


def test_totp_matches_the_rfc_test_vectors() -> None:
    # RFC 4226 appendix D and RFC 6238 appendix B (8 digits, one key per algorithm).
    assert [hotp(b"12345678901234567890", c) for c in range(3)] == ["755224", "287082", "359152"]
    assert totp(b"12345678901234567890", at=59, digits=8) == "94287082"
    assert totp("12345678901234567890", at=1111111109, digits=8) == "07081804"
    assert (
        totp(b"12345678901234567890123456789012", at=20000000000, digits=8, algorithm="HmacSHA256")
        == "77737706"
    )
    key512 = b"1234567890" * 6 + b"1234"
    assert totp(key512, at=59, digits=8, algorithm="HmacSHA512") == "90693936"
    # What an authenticator app scans is the same key, base32-encoded.
    encoded = base64.b32encode(b"12345678901234567890").decode().rstrip("=")
    assert totp_from_base32(encoded, at=59, digits=8) == "94287082"


def test_an_otp_is_the_current_or_the_next_periods_never_one_sent_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One second before a rollover: the previous period's code would expire before the
    # POST could arrive, so only the current and the next one are handed out, once each.
    secret, realm = _keycloak_style_secret(), f"offline-{secrets.token_hex(3)}"
    edge = 1_800_000_029.0  # period 60_000_000, its last second
    monkeypatch.setattr(university_realm.time, "time", lambda: edge)
    current, following = (totp(secret, at=edge + d) for d in (0, 30))
    assert [_fresh_totp(realm, secret), _fresh_totp(realm, secret)] == [current, following]
    with pytest.raises(RuntimeError, match="current and the next TOTP code"):
        _fresh_totp(realm, secret)
    # After the rollover the period after that is free; the one sent already is not reused.
    monkeypatch.setattr(university_realm.time, "time", lambda: edge + 1)
    assert _fresh_totp(realm, secret) == totp(secret, at=edge + 31)


def test_snapshot_diff_names_each_difference_readably() -> None:
    before = {
        "realm": {"failureFactor": 3, "supportedLocales": ["en", "de"], "displayName": "U"},
        "clients": {"uni-portal": {"attributes": {"pkce.code.challenge.method": "S256"}}},
        "flows": {"uni browser": {"executions": {"auth-otp-form": {"requirement": "X"}}}},
    }
    assert snapshot_diff(before, json.loads(json.dumps(before))) == []
    after = json.loads(json.dumps(before))
    after["realm"] |= {"failureFactor": 5, "supportedLocales": ["de", "en", "fr"]}
    del after["realm"]["displayName"]
    after["clients"]["uni-portal"]["attributes"]["pkce.code.challenge.method"] = "plain"
    after["flows"]["uni browser"]["executions"]["auth-otp-form"]["requirement"] = "REQUIRED"
    after["roles"] = {"helpdesk": {}}
    assert snapshot_diff(before, after) == [
        'clients.uni-portal.attributes["pkce.code.challenge.method"]: "S256" → "plain"',
        'flows["uni browser"].executions.auth-otp-form.requirement: "X" → "REQUIRED"',
        'realm.displayName: removed (was "U")',
        "realm.failureFactor: 3 → 5",
        'realm.supportedLocales: added "fr"',
        'roles: added {"helpdesk": {}}',
    ]
    # Lists of plain values are sets; True is not 1.
    assert snapshot_diff({"a": [1, 2]}, {"a": [2, 1]}) == []
    assert snapshot_diff({"a": 1}, {"a": True}) == ["a: 1 → true"]


# --- the realm --------------------------------------------------------------------------


def test_the_realm_is_set_up_as_the_university_has_it(
    kc: KeycloakAdmin, uni: UniversityRealm
) -> None:
    realm = kc.get_realm(uni.name)
    assert realm["passwordPolicy"] == PASSWORD_POLICY
    assert (realm["failureFactor"], realm["bruteForceProtected"]) == (3, True)
    assert (realm["browserFlow"], realm["directGrantFlow"]) == ("uni browser", "uni direct grant")
    assert set(realm["supportedLocales"]) == {"en", "de"}
    profile = kc.connection.raw_get(f"admin/realms/{uni.name}/users/profile").json()
    assert profile["unmanagedAttributePolicy"] == "ADMIN_EDIT"
    department = next(a for a in profile["attributes"] if a["name"] == "department")
    assert department["group"] == "staff-data"
    assert department["permissions"] == {"view": ["admin", "user"], "edit": ["admin"]}
    idp = kc.connection.raw_get(
        f"admin/realms/{uni.name}/identity-provider/instances/{uni.partner_idp_alias}"
    ).json()
    assert idp["config"]["syncMode"] == "IMPORT"
    assert idp["config"]["issuer"] == f"{uni.server_url}/realms/{uni.partner_realm}"


def test_staff_signs_in_with_password_then_otp(uni: UniversityRealm) -> None:
    result = uni.sign_in_staff()
    assert result.ok, result.error
    assert result.pages == ["username-password", "otp"] and result.asked_for_otp
    assert result.tokens is not None
    claims = _claims(result.tokens["access_token"])
    assert claims["iss"] == f"{uni.server_url}/realms/{uni.name}"
    assert claims["preferred_username"] == uni.staff_username
    assert "faculty" in claims["realm_access"]["roles"]


def test_a_wrong_otp_is_refused(uni: UniversityRealm) -> None:
    result = uni.sign_in_staff(totp_secret="not-the-staff-secret")
    assert not result.ok and result.tokens is None
    assert result.pages == ["username-password", "otp", "otp"]
    assert result.error == "Invalid authenticator code."


def test_a_username_first_flow_is_walked_too(
    kc: KeycloakAdmin, uni_admin: KeycloakAdmin, uni: UniversityRealm, uni_changes: RealmChanges
) -> None:
    # What our extension does to the browser flow: username, then password, then OTP.
    alias = "uni username first"

    def delete_the_copy() -> None:
        for flow in uni_admin.get_authentication_flows():
            if flow["alias"] == alias:
                uni_admin.delete_authentication_flow(flow["id"])

    uni_changes.on_undo(delete_the_copy)  # also what a copy that failed half-way left
    _username_first_copy(kc, uni, alias)
    with uni_changes.realm_settings({"browserFlow": alias}):
        result = uni.sign_in_staff()
    assert result.ok, result.error
    assert result.pages == ["username", "password", "otp"]


def test_a_page_that_is_no_login_form_stops_the_walk(uni: UniversityRealm) -> None:
    result = sign_in_with_password_and_otp(
        uni.server_url,
        uni.name,
        uni.staff_username,
        uni.staff_password,
        uni.staff_totp_secret,
        redirect_uri="http://127.0.0.1:5998/elsewhere",
    )
    assert not result.ok and len(result.pages) == 1
    assert result.pages[0].startswith("other:")
    assert "redirect_uri" in result.error


def test_partner_user_signs_in_through_the_partner(
    uni_admin: KeycloakAdmin, uni: UniversityRealm
) -> None:
    first = uni.sign_in_partner_user()
    assert first.ok, first.error
    # Only the partner's own login form: Keycloak's first-broker-login asks nothing more
    # of an account that comes with email and names.
    assert [(s.realm, s.kind) for s in first.steps] == [(uni.partner_realm, "username-password")]
    assert first.tokens is not None
    claims = _claims(first.tokens["access_token"])
    assert claims["iss"] == f"{uni.server_url}/realms/{uni.name}"
    local = uni_admin.get_users({"username": uni.partner_username, "exact": True})
    assert len(local) == 1
    links = uni_admin.get_user_social_logins(local[0]["id"])
    assert [(link["identityProvider"], link["userName"]) for link in links] == [
        (uni.partner_idp_alias, uni.partner_username)
    ]
    assert local[0]["email"] == uni.partner_email
    again = uni.sign_in_partner_user()
    assert again.ok and again.tokens is not None, again.error
    assert _claims(again.tokens["access_token"])["sub"] == claims["sub"]
    assert uni_admin.get_users({"username": uni.partner_username, "exact": True}) == local


def test_a_review_profile_page_is_answered_as_filled_in(
    keycloak_server: KeycloakUnderTest, uni_admin: KeycloakAdmin, uni: UniversityRealm
) -> None:
    # Keycloak's default reviews the profile only when something is missing; a realm set
    # to always review shows the page, which the helper submits as Keycloak filled it.
    partner_admin = master_admin(keycloak_server)
    partner_admin.change_current_realm(uni.partner_realm)
    password = "partner " + secrets.token_urlsafe(12)
    partner_id = partner_admin.create_user(
        {
            "username": "partner-two",
            "enabled": True,
            "email": "partner-two@partner.example.org",
            "emailVerified": True,
            "firstName": "Robin",
            "lastName": "Partner",
            "credentials": [{"type": "password", "value": password, "temporary": False}],
        }
    )
    review = next(
        e
        for e in uni_admin.get_authentication_flow_executions("first broker login")
        if e.get("providerId") == "idp-review-profile"
    )
    config = uni_admin.get_authenticator_config(review["authenticationConfig"])
    uni_admin.update_authenticator_config(
        {**config, "config": {"update.profile.on.first.login": "on"}}, config["id"]
    )
    try:
        result = sign_in_through_partner(uni.server_url, uni.name, "partner-two", password)
    finally:
        uni_admin.update_authenticator_config(config, config["id"])
        partner_admin.delete_user(partner_id)
        for local in uni_admin.get_users({"username": "partner-two", "exact": True}):
            uni_admin.delete_user(local["id"])
    assert result.ok, result.error
    assert [(s.realm, s.kind) for s in result.steps] == [
        (uni.partner_realm, "username-password"),
        (uni.name, "review-profile"),
    ]


def test_staff_attributes_are_visible_to_admins(
    uni_admin: KeycloakAdmin, uni: UniversityRealm
) -> None:
    (staff,) = uni_admin.get_users({"username": uni.staff_username, "exact": True})
    user = uni_admin.get_user(staff["id"])
    assert user["attributes"]["department"] == ["Physics"]
    assert user["attributes"]["legacy_id"] == ["L-0042"]
    credentials = {c["type"] for c in uni_admin.get_credentials(staff["id"])}
    assert credentials == {"password", "otp"}


def test_two_snapshots_in_a_row_are_equal(kc: KeycloakAdmin, uni: UniversityRealm) -> None:
    first = realm_snapshot(kc, uni.name)
    second = realm_snapshot(kc, uni.name)
    assert snapshot_diff(first, second) == []
    # It holds what it promises, keyed by name.
    assert first["realm"]["failureFactor"] == 3 and "id" not in first["realm"]
    assert first["bindings"]["browserFlow"] == "uni browser"
    otp = first["flows"]["uni browser"]["executions"]["uni browser forms"]["executions"]
    assert otp["uni browser Browser - Conditional 2FA"]["executions"]["auth-otp-form"] == {
        "requirement": "ALTERNATIVE"
    }
    assert "uni-portal" in first["clients"] and "secret" not in first["clients"]["uni-reports"]
    assert first["clientRoles"]["uni-portal"]["editor"]["description"] == "Edits portal pages"
    assert "faculty" in first["roles"] and "partner" in first["identityProviders"]
    assert first["localization"]["de"]["uniServiceDesk"].startswith("IT-Servicedesk")
    staff = first["users"]["staff1"]
    assert staff["attributes"] == {"department": ["Physics"], "legacy_id": ["L-0042"]}
    assert set(staff["credentialTypes"]) == {"password", "otp"}
    assert "faculty" in staff["roles"]["realm"]


def test_a_changed_setting_is_one_readable_line(
    kc: KeycloakAdmin, uni: UniversityRealm, uni_changes: RealmChanges
) -> None:
    before = realm_snapshot(kc, uni.name)
    with uni_changes.realm_settings({"failureFactor": 4}):
        changed = realm_snapshot(kc, uni.name)
    assert snapshot_diff(before, changed) == ["realm.failureFactor: 3 → 4"]
    assert snapshot_diff(before, realm_snapshot(kc, uni.name)) == []


def _username_first_copy(kc: KeycloakAdmin, uni: UniversityRealm, alias: str) -> None:
    """A copy of the realm's browser flow whose forms ask for the username, then the
    password, then (the copied conditional 2FA) the OTP."""
    flows = f"admin/realms/{uni.name}/authentication/flows"
    conn = kc.connection
    assert conn.raw_post(f"{flows}/{quote(uni.browser_flow)}/copy", json.dumps({"newName": alias}))
    executions = conn.raw_get(f"{flows}/{quote(alias)}/executions").json()
    combined = next(e for e in executions if e.get("providerId") == "auth-username-password-form")
    parent = next(e for e in reversed(executions[: executions.index(combined)]) if e["level"] == 0)[
        "displayName"
    ]
    conn.raw_delete(f"admin/realms/{uni.name}/authentication/executions/{combined['id']}")
    for provider in ("auth-username-form", "auth-password-form"):
        added = conn.raw_post(
            f"{flows}/{quote(parent)}/executions/execution", json.dumps({"provider": provider})
        )
        assert added.status_code == 201, added.text
        execution_id = added.headers["Location"].rsplit("/", 1)[1]
        execution = next(
            e
            for e in conn.raw_get(f"{flows}/{quote(alias)}/executions").json()
            if e["id"] == execution_id
        )
        conn.raw_put(
            f"{flows}/{quote(alias)}/executions",
            json.dumps({**execution, "requirement": "REQUIRED"}),
        )
        # Added last, after the 2FA sub-flow: one step up puts it before.
        conn.raw_post(
            f"admin/realms/{uni.name}/authentication/executions/{execution_id}/raise-priority", "{}"
        )
