"""LDAP user federation: a student whose account lives in the directory shows up in
Keycloak, is activated by the gateway's one write, the password lands in the directory
and a real sign-in works.

The federation goes into a realm of its own (applied from keycloak_config like the
session's realm, deleted at the end), so no other test meets directory users.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from devstack import slapd
from keycloak import KeycloakAdmin
from keycloak.exceptions import KeycloakError
from ldap3 import Connection, Server

from keycloak_config.apply import ApplyError, apply_realm
from keycloak_config.ldap_federation import (
    MAPPER_TYPE,
    LdapFederationSettings,
    apply_ldap_federation,
    remove_ldap_federation,
)
from provider.config import KeycloakSettings
from provider.keycloak import (
    ACTIVATION_STATE,
    PHONE_NUMBER,
    STATE_ACTIVE,
    STATE_PENDING,
    STUDENTS_GROUP,
    GatewayRequestRefused,
    IdentityServiceUnavailable,
    KeycloakGateway,
    PasswordRejected,
)
from tests.conftest import KeycloakUnderTest, RealmUnderTest, master_admin
from tests.support.keycloak_login import sign_in
from tests.support.ldap_server import admin_connection, seed_students, student
from tests.support.policies import accepted_first_versions

IDP = "umpass-activation"


@dataclass(frozen=True)
class LdapRealm:
    name: str
    url: str  # Keycloak's
    admin: KeycloakAdmin  # master-realm admin, current realm = this one
    ou: str  # where the directory's students live (the federation's usersDn)
    federation: LdapFederationSettings
    first_apply: list[str]
    gateway: KeycloakGateway  # as the service: its own client, in this realm

    def component(self) -> dict:
        realm_id = self.admin.get_realm(self.name)["id"]
        return next(
            c
            for c in self.admin.get_components({"parent": realm_id, "name": "ldap"})
            if c["providerId"] == "ldap"
        )


@pytest.fixture(scope="module")
def ldap_realm(
    keycloak_server: KeycloakUnderTest, realm: RealmUnderTest, slapd_server: slapd.SlapdServer
) -> Iterator[LdapRealm]:
    # The session realm's options (every secret and URL it needs) under another name.
    name = f"umpass-l{secrets.token_hex(3)}"
    options = dataclasses.replace(
        realm.options, realm=name, variables={**realm.options.variables, "REALM": name}
    )
    admin = master_admin(keycloak_server)
    try:
        apply_realm(options)
        admin.change_current_realm(name)
        ou = f"people-{secrets.token_hex(3)}"
        people = seed_students(slapd_server, [], ou=ou)
        federation = LdapFederationSettings(
            connection_url=slapd_server.url,
            bind_dn=slapd_server.admin_dn,
            bind_credential=slapd_server.admin_password,
            users_dn=people.base_dn,
        )
        first = apply_ldap_federation(admin, name, federation)
        gateway = KeycloakGateway(
            KeycloakSettings(
                url=keycloak_server.url,
                realm=name,
                client_id="umpass-activation",
                client_secret=options.variables["ACTIVATION_CLIENT_SECRET"],
            )
        )
        yield LdapRealm(name, keycloak_server.url, admin, ou, federation, first, gateway)
    finally:
        with contextlib.suppress(KeycloakError):  # a realm the apply never created
            admin.delete_realm(name)


def directory_student(server: slapd.SlapdServer, realm: LdapRealm, **values: str) -> dict:
    record = student(f"d{secrets.token_hex(3)}", first_name="Ana", last_name="Lei", **values)
    seeded = seed_students(server, [record], ou=realm.ou)
    return {**record, "dn": seeded.dns[0]}


def enrol_directory_student(realm: LdapRealm, user_id: str) -> str:
    """What the intake does, with the provisioning side's rights: the exact username search
    reaches the directory and imports the account, which is marked pending and joins the
    students group (the service's own credential reaches members only)."""
    found = realm.admin.get_users({"username": user_id, "exact": True})
    assert len(found) == 1
    user_id_kc = found[0]["id"]
    rep = realm.admin.get_user(user_id_kc)
    attributes = {**(rep.get("attributes") or {}), ACTIVATION_STATE: [STATE_PENDING]}
    realm.admin.update_user(user_id_kc, {**rep, "attributes": attributes})
    group = realm.admin.get_group_by_path(f"/{STUDENTS_GROUP}")
    realm.admin.group_user_add(user_id_kc, group["id"])
    return user_id_kc


def binds(server: slapd.SlapdServer, dn: str, password: str) -> bool:
    conn = Connection(Server(server.url, connect_timeout=5), dn, password, receive_timeout=10)
    try:
        return bool(conn.bind())
    finally:
        conn.unbind()


def good_password() -> str:
    return f"Ld-{secrets.token_urlsafe(12)}-9"


def test_federation_apply_is_idempotent(ldap_realm: LdapRealm) -> None:
    assert ldap_realm.first_apply == [
        "create LDAP federation ldap",
        # Keycloak's default "first name" mapper reads cn, the whole name.
        "LDAP mapper first name",
    ]
    assert apply_ldap_federation(ldap_realm.admin, ldap_realm.name, ldap_realm.federation) == []
    # The stored credential never reads back, hence the bind test in place of a comparison.
    assert ldap_realm.component()["config"]["bindCredential"] == ["**********"]


def test_drift_is_repaired(ldap_realm: LdapRealm) -> None:
    admin, name = ldap_realm.admin, ldap_realm.name
    component = ldap_realm.component()
    stale = {**component, "config": {**component["config"], "bindCredential": ["stale"]}}
    admin.update_component(component["id"], stale)
    mappers = {m["name"]: m for m in admin.get_components({"parent": component["id"]})}
    first_name = mappers["first name"]
    admin.update_component(
        first_name["id"],
        {**first_name, "config": {**first_name["config"], "ldap.attribute": ["cn"]}},
    )
    admin.delete_component(mappers["last name"]["id"])
    # Another kind of mapper under a managed name.
    admin.delete_component(mappers["email"]["id"])
    admin.create_component(
        {
            "name": "email",
            "providerId": "hardcoded-ldap-attribute-mapper",
            "providerType": MAPPER_TYPE,
            "parentId": component["id"],
            "config": {"ldap.attribute.name": ["l"], "ldap.attribute.value": ["Macau"]},
        }
    )

    assert apply_ldap_federation(admin, name, ldap_realm.federation) == [
        "LDAP federation ldap: bindCredential",
        "LDAP mapper first name",
        "create LDAP mapper last name",
        "LDAP mapper email",
    ]
    assert apply_ldap_federation(admin, name, ldap_realm.federation) == []
    email = next(
        m
        for m in admin.get_components({"parent": component["id"], "name": "email"})
        if m["name"] == "email"
    )
    assert email["providerId"] == "user-attribute-ldap-mapper"


def test_a_bind_keycloak_cannot_make_is_refused_before_any_write(ldap_realm: LdapRealm) -> None:
    wrong = LdapFederationSettings(
        connection_url=ldap_realm.federation.connection_url,
        bind_dn=ldap_realm.federation.bind_dn,
        bind_credential="not-" + secrets.token_urlsafe(8),
        users_dn=ldap_realm.federation.users_dn,
        name="ldap-wrong",
    )

    with pytest.raises(ApplyError) as caught:
        apply_ldap_federation(ldap_realm.admin, ldap_realm.name, wrong)

    assert str(caught.value) == (
        f"Keycloak cannot bind to the LDAP server at {wrong.connection_url} as {wrong.bind_dn} "
        "(AuthenticationFailure): check the URL, the bind DN and its password"
    )
    assert wrong.bind_credential not in str(caught.value)
    assert not remove_ldap_federation(ldap_realm.admin, ldap_realm.name, "ldap-wrong")


def test_directory_student_is_activated_and_signs_in(
    ldap_realm: LdapRealm, slapd_server: slapd.SlapdServer
) -> None:
    gateway = ldap_realm.gateway
    ana = directory_student(slapd_server, ldap_realm)

    # Outside the students group the service can neither read nor change the directory
    # account. (Keycloak lets the search that imports it from the directory answer with
    # it, once: a later search is filtered like any other; README, "Security decisions".)
    first_sight = gateway.find_user(ana["user_id"])
    assert first_sight is not None
    with pytest.raises(GatewayRequestRefused):
        gateway.get_user(first_sight.id)
    with pytest.raises(GatewayRequestRefused):
        gateway.set_phone(first_sight.id, "+85361234567")
    assert gateway.find_user(ana["user_id"]) is None
    enrol_directory_student(ldap_realm, ana["user_id"])
    user = gateway.find_user(ana["user_id"])
    assert user is not None
    assert (user.first_name, user.last_name, user.email) == ("Ana", "Lei", ana["email"])
    assert user.attribute("LDAP_ENTRY_DN") == ana["dn"]

    gateway.set_phone(user.id, "+85361234567")
    # The gateway writes the whole user back: names and email stay, here and in LDAP.
    pending = gateway.get_user(user.id)
    assert pending.attribute(PHONE_NUMBER) == "+85361234567"
    assert (pending.first_name, pending.last_name, pending.email) == ("Ana", "Lei", ana["email"])
    conn = admin_connection(slapd_server)
    conn.search(ana["dn"], "(objectClass=*)", search_scope="BASE", attributes=["*"])
    entry = conn.entries[0]
    assert (entry.givenName.value, entry.sn.value, entry.mail.value) == ("Ana", "Lei", ana["email"])
    assert "userPassword" not in entry

    url = ldap_realm.url
    password = good_password()
    before = sign_in(url, ldap_realm.name, ana["user_id"], password)
    assert not before.ok
    assert f"/broker/{IDP}/login" in before.location  # pending: to activation, no password form

    assert gateway.activate(
        user.id, password, attributes={"accepted_policies": accepted_first_versions()}
    )

    # (a) the password reached the directory, hashed by the server (Password Modify).
    assert binds(slapd_server, ana["dn"], password)
    conn.search(ana["dn"], "(objectClass=*)", search_scope="BASE", attributes=["userPassword"])
    stored = conn.entries[0].userPassword.value
    conn.unbind()
    assert stored.startswith(b"{SSHA}")
    # (b) a real sign-in through the realm's browser flow.
    after = sign_in(url, ldap_realm.name, ana["user_id"], password)
    assert after.ok, after.page[:500]
    active = gateway.get_user(user.id)
    assert active.activation_state == STATE_ACTIVE
    assert active.attribute("activated_at")


def test_realm_password_policy_holds_for_directory_accounts(
    ldap_realm: LdapRealm, slapd_server: slapd.SlapdServer
) -> None:
    gateway = ldap_realm.gateway
    kit = directory_student(slapd_server, ldap_realm)
    enrol_directory_student(ldap_realm, kit["user_id"])
    user = gateway.find_user(kit["user_id"])
    assert user is not None

    with pytest.raises(PasswordRejected):
        gateway.activate(user.id, "short1!", attributes={"accepted_policies": []})

    assert gateway.get_user(user.id).activation_state == STATE_PENDING
    assert not binds(slapd_server, kit["dn"], "short1!")


def test_directory_outage_leaves_the_account_pending(ldap_realm: LdapRealm) -> None:
    """Keycloak writes the password to the directory inside the activation's one PUT: with
    the directory down the whole write is refused and nothing is half-done."""
    own = slapd.start(admin_password=secrets.token_urlsafe(12))
    name = "ldap-outage"
    try:
        record = student(f"o{secrets.token_hex(3)}")
        seeded = seed_students(own, [record])
        outage = LdapFederationSettings(
            connection_url=own.url,
            bind_dn=own.admin_dn,
            bind_credential=own.admin_password,
            users_dn=seeded.base_dn,
            name=name,
        )
        apply_ldap_federation(ldap_realm.admin, ldap_realm.name, outage)
        enrol_directory_student(ldap_realm, record["user_id"])
        user = ldap_realm.gateway.find_user(record["user_id"])
        assert user is not None
        slapd.stop(own)

        # Keycloak answers HTTP 400 "The user is read-only. The user storage provider
        # 'ldap-outage' is currently unavailable", not a 5xx: the gateway calls it what it
        # is for the student, an outage ("try again later").
        with pytest.raises(IdentityServiceUnavailable):
            ldap_realm.gateway.activate(user.id, good_password(), attributes={})
        assert ldap_realm.gateway.get_user(user.id).activation_state == STATE_PENDING
    finally:
        slapd.stop(own)
        remove_ldap_federation(ldap_realm.admin, ldap_realm.name, name)


def test_a_federation_can_be_removed(
    ldap_realm: LdapRealm, slapd_server: slapd.SlapdServer
) -> None:
    scratch = seed_students(slapd_server, [], ou=f"scratch-{secrets.token_hex(3)}")
    settings = LdapFederationSettings(
        connection_url=slapd_server.url,
        bind_dn=slapd_server.admin_dn,
        bind_credential=slapd_server.admin_password,
        users_dn=scratch.base_dn,
        name="ldap-scratch",
    )
    assert apply_ldap_federation(ldap_realm.admin, ldap_realm.name, settings)

    assert remove_ldap_federation(ldap_realm.admin, ldap_realm.name, "ldap-scratch")
    assert not remove_ldap_federation(ldap_realm.admin, ldap_realm.name, "ldap-scratch")
    assert ldap_realm.component()["name"] == "ldap"  # the other federation is untouched
