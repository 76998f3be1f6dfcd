"""Point 1 of issue 19: no grant gives a pending account a token.

Each grant a client of the realm can enable is proven here against the real Keycloak with a
client configured for it (the browser and direct grant flows: test_sign_in_flows.py), with a
positive control beside each refusal so that a refusal for another reason (a typo in the
request) cannot pass for the guarantee. The last test lists the realm's clients and fails
when one enables a grant no test here covers.
"""

from __future__ import annotations

import html
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from devstack.keycloak import CIBA_CHANNEL_PORT
from keycloak import KeycloakAdmin

from provider.keycloak import ACTIVATION_STATE
from provider.services import Services
from tests.conftest import KeycloakUnderTest, RealmUnderTest
from tests.support.grants import (
    PASSWORD,
    active_student,
    add_client,
    oidc,
    password_grant,
    refresh_grant,
)
from tests.support.keycloak_login import demo_callback, post_login_form
from tests.support.realm_changes import RealmChanges
from tests.support.students import enrol_student

_FORM_ACTION = re.compile(r'<form[^>]*action="([^"]+)"')
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
CIBA_GRANT = "urn:openid:params:grant-type:ciba"

# Client switches and attributes that open a way to a token, and the test covering each.
COVERED = {
    "standardFlowEnabled": "test_sign_in_flows.py: the browser flow sends pending to activation",
    "directAccessGrantsEnabled": "test_sign_in_flows.py: test_password_grant_refuses_…",
    "serviceAccountsEnabled": "test_service_accounts_are_never_students",
    "oauth2.device.authorization.grant.enabled": "test_device_grant_refuses_a_pending_account",
    "standard.token.exchange.enabled": "test_token_exchange_refuses_an_account_set_back_to_pending",
    "oidc.ciba.grant.enabled": "test_ciba_refuses_a_pending_account, …_set_back_to_pending_…",
}


@pytest.fixture
def device_client(realm_changes: RealmChanges) -> dict[str, Any]:
    return add_client(
        realm_changes, attributes={"oauth2.device.authorization.grant.enabled": "true"}
    )


def _start_device(server: KeycloakUnderTest, realm: RealmUnderTest, client_id: str) -> dict:
    answer = requests.post(
        f"{oidc(server.url, realm.name)}/auth/device",
        data={"client_id": client_id, "scope": "openid"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _poll(
    server: KeycloakUnderTest, realm: RealmUnderTest, client_id: str, device: dict
) -> requests.Response:
    return requests.post(
        f"{oidc(server.url, realm.name)}/token",
        data={
            "grant_type": DEVICE_GRANT,
            "client_id": client_id,
            "device_code": device["device_code"],
        },
        timeout=30,
    )


def _verify_device(device: dict, username: str) -> requests.Response:
    """The user's side: open the verification link, type the user ID (and the password,
    when Keycloak asks for one). Returns Keycloak's last answer."""
    session = requests.Session()
    page = _follow(session, device["verification_uri_complete"])
    assert page.status_code == 200 and "kc-form-login" in page.text, page.text[:300]
    answer = post_login_form(session, page.text, {"username": username})
    if answer.status_code == 200 and 'name="password"' in answer.text:
        answer = post_login_form(session, answer.text, {"password": PASSWORD, "credentialId": ""})
    if answer.is_redirect and "/broker/" not in answer.headers["Location"]:
        answer = _follow(session, answer.headers["Location"])
    if "OAUTH_GRANT" in answer.url:  # Keycloak always asks a device user to consent
        found = _FORM_ACTION.search(answer.text)
        assert found, answer.text[:300]
        action = requests.compat.urljoin(answer.url, html.unescape(found.group(1)))
        hidden = dict(_HIDDEN.findall(answer.text))
        consent = session.post(
            action, data={**hidden, "accept": "Yes"}, allow_redirects=False, timeout=30
        )
        answer = _follow(session, consent.headers["Location"]) if consent.is_redirect else consent
    return answer


def _follow(session: requests.Session, url: str) -> requests.Response:
    """GET, following redirects one by one: Keycloak marks its cookies Secure even on
    loopback HTTP, where browsers send them and requests does not unless told."""
    while True:
        answer = session.get(url, allow_redirects=False, timeout=30)
        for cookie in session.cookies:
            cookie.secure = False
        if not answer.is_redirect:
            return answer
        url = requests.compat.urljoin(url, answer.headers["Location"])


def test_device_grant_refuses_a_pending_account(
    keycloak_server: KeycloakUnderTest,
    realm: RealmUnderTest,
    services: Services,
    device_client: dict[str, Any],
) -> None:
    """The device's user signs in at /device through the realm's browser flow, which
    sends a pending account to activation: the device never gets a token."""
    client_id = device_client["clientId"]
    who = enrol_student(services, "v")
    user = services.keycloak.find_user(who.user_id)
    assert user is not None
    services.keycloak.set_password(user.id, PASSWORD)  # behind the service's back
    device = _start_device(keycloak_server, realm, client_id)
    answer = _verify_device(device, who.user_id)
    assert answer.is_redirect and "/broker/umpass-activation/login" in answer.headers["Location"]
    assert 'name="password"' not in answer.text
    polled = _poll(keycloak_server, realm, client_id, device)
    assert polled.status_code == 400 and polled.json()["error"] == "authorization_pending"
    # The control: an active student on the same client and device flow gets tokens.
    student = active_student(services, "v")
    device = _start_device(keycloak_server, realm, client_id)
    _verify_device(device, student.username)
    polled = _poll(keycloak_server, realm, client_id, device)
    assert polled.status_code == 200, polled.text
    assert "access_token" in polled.json()


@pytest.fixture
def password_client(realm_changes: RealmChanges) -> dict[str, Any]:
    return add_client(realm_changes, directAccessGrantsEnabled=True)


@pytest.mark.parametrize("scope", ["openid", "openid offline_access"])
def test_refresh_refuses_an_account_set_back_to_pending(
    keycloak_server: KeycloakUnderTest,
    realm: RealmUnderTest,
    services: Services,
    password_client: dict[str, Any],
    scope: str,
) -> None:
    """A refresh (or offline) token obtained while the account was active: the help
    desk's "back to pending" ends the account's sessions, and with them every refresh."""
    client_id = password_client["clientId"]
    student = active_student(services, "r")
    first = password_grant(
        keycloak_server.url, realm.name, client_id, student.username, scope=scope
    )
    assert first.status_code == 200, first.text
    refresh_token = first.json()["refresh_token"]
    refreshed = refresh_grant(keycloak_server.url, realm.name, client_id, refresh_token)
    assert refreshed.status_code == 200
    services.keycloak.set_back_to_pending(student.id)
    assert services.keycloak.get_user(student.id).activation_state == "pending"
    refused = refresh_grant(keycloak_server.url, realm.name, client_id, refresh_token)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == "invalid_grant" and "access_token" not in refused.text


@pytest.fixture
def exchange_clients(
    realm_changes: RealmChanges,
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """A confidential client allowed standard token exchange, and a public client whose
    tokens name it in their audience (what the exchange requires)."""
    requester = add_client(
        realm_changes,
        publicClient=False,
        clientAuthenticatorType="client-secret",
        secret="exchange-" + "s" * 24,
        attributes={"standard.token.exchange.enabled": "true"},
    )
    front = add_client(
        realm_changes,
        directAccessGrantsEnabled=True,
        protocolMappers=[
            {
                "name": "audience",
                "protocol": "openid-connect",
                "protocolMapper": "oidc-audience-mapper",
                "config": {
                    "included.client.audience": requester["clientId"],
                    "access.token.claim": "true",
                    "id.token.claim": "false",
                },
            }
        ],
    )
    yield requester, front


def _exchange(
    server: KeycloakUnderTest, realm: RealmUnderTest, requester: dict[str, Any], token: str
) -> requests.Response:
    return requests.post(
        f"{oidc(server.url, realm.name)}/token",
        data={
            "grant_type": TOKEN_EXCHANGE,
            "client_id": requester["clientId"],
            "client_secret": requester["secret"],
            "subject_token": token,
            "subject_token_type": ACCESS_TOKEN_TYPE,
        },
        timeout=30,
    )


def test_token_exchange_refuses_an_account_set_back_to_pending(
    keycloak_server: KeycloakUnderTest,
    realm: RealmUnderTest,
    services: Services,
    exchange_clients: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    """A pending account never holds a token to exchange (every other grant refuses it);
    one obtained while it was active stops working when the help desk sets it back."""
    requester, front = exchange_clients
    student = active_student(services, "x")
    first = password_grant(keycloak_server.url, realm.name, front["clientId"], student.username)
    assert first.status_code == 200, first.text
    subject = first.json()["access_token"]
    exchanged = _exchange(keycloak_server, realm, requester, subject)
    assert exchanged.status_code == 200, exchanged.text  # the control
    services.keycloak.set_back_to_pending(student.id)
    refused = _exchange(keycloak_server, realm, requester, subject)
    assert refused.status_code in (400, 401), refused.text
    assert "access_token" not in refused.text


@pytest.mark.parametrize(
    "response_type", ["token", "id_token token", "code id_token", "code token"]
)
def test_implicit_and_hybrid_are_refused(
    keycloak_server: KeycloakUnderTest, realm: RealmUnderTest, response_type: str
) -> None:
    """No client enables the implicit flow (the last test keeps it so); a request for it
    or for a hybrid response never reaches a login form."""
    answer = requests.get(
        f"{oidc(keycloak_server.url, realm.name)}/auth",
        params={
            "client_id": "umpass-demo",
            "redirect_uri": demo_callback(),
            "response_type": response_type,
            "scope": "openid",
            "nonce": "n-0S6_WzA2Mj",
            "state": "s1",
        },
        allow_redirects=False,
        timeout=30,
    )
    location = answer.headers.get("Location", "")
    assert answer.is_redirect and location.startswith(demo_callback()), answer.text[:300]
    assert "error=unauthorized_client" in location
    assert "access_token" not in location and "id_token=" not in location
    assert "code=" not in location.replace("error=", "")


def test_a_client_that_enabled_implicit_still_sends_a_pending_account_to_activation(
    keycloak_server: KeycloakUnderTest,
    realm: RealmUnderTest,
    services: Services,
    realm_changes: RealmChanges,
) -> None:
    """Beyond the realm's rule (no client enables it): implicit signs in through the same
    browser flow, so even a client a university left with it enabled gives a pending account
    no token."""
    client = add_client(realm_changes, implicitFlowEnabled=True, redirectUris=[demo_callback()])
    who = enrol_student(services, "i")
    user = services.keycloak.find_user(who.user_id)
    assert user is not None
    services.keycloak.set_password(user.id, PASSWORD)  # behind the service's back
    session = requests.Session()
    url = f"{oidc(keycloak_server.url, realm.name)}/auth?" + requests.compat.urlencode(
        {
            "client_id": client["clientId"],
            "redirect_uri": demo_callback(),
            "response_type": "id_token token",
            "scope": "openid",
            "nonce": "n-1",
        }
    )
    page = _follow(session, url)
    answer = post_login_form(session, page.text, {"username": who.user_id})
    assert answer.is_redirect and "/broker/umpass-activation/login" in answer.headers["Location"]
    assert "access_token" not in answer.headers["Location"]
    # The control: an active student on the same client gets its token in the fragment.
    student = active_student(services, "i")
    session = requests.Session()
    page = _follow(session, url)
    answer = post_login_form(session, page.text, {"username": student.username})
    answer = post_login_form(session, answer.text, {"password": PASSWORD, "credentialId": ""})
    assert answer.is_redirect and "access_token=" in answer.headers["Location"].split("#")[1]


class CibaChannel:
    """The user's authentication device as Keycloak's CIBA grant sees it: Keycloak POSTs
    each authentication request to the channel URI of every server this project starts
    (devstack.keycloak.CIBA_CHANNEL_URI), with a Bearer token that the device later hands
    back with its verdict. This one answers 201 and records what it was asked; the test
    plays the user approving (`_ciba_approve`)."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, dict[str, Any]]] = []  # (bearer, body) per request
        self._lock = threading.Lock()
        channel = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", "0")))
                bearer = self.headers.get("authorization", "").removeprefix("Bearer ")
                with channel._lock:
                    channel.asked.append((bearer, json.loads(raw or b"{}")))
                self.send_response(201)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        try:
            self._server = ThreadingHTTPServer(("127.0.0.1", CIBA_CHANNEL_PORT), Handler)
        except OSError as exc:  # loudly: a skipped CIBA test would prove nothing
            pytest.fail(
                f"the CIBA channel port 127.0.0.1:{CIBA_CHANNEL_PORT} "
                f"(devstack.keycloak.CIBA_CHANNEL_PORT) is taken: {exc}. Stop what holds it "
                "(another test run?) and run again."
            )
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def requests_for(self, username: str) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            return [(b, body) for b, body in self.asked if body.get("login_hint") == username]


@pytest.fixture
def ciba_channel() -> Iterator[CibaChannel]:
    channel = CibaChannel()
    try:
        yield channel
    finally:
        channel.close()


@pytest.fixture
def ciba_client(realm_changes: RealmChanges) -> dict[str, Any]:
    """A confidential client allowed CIBA, its tokens fetched by polling."""
    return add_client(
        realm_changes,
        publicClient=False,
        clientAuthenticatorType="client-secret",
        secret="ciba-" + "c" * 24,
        attributes={
            "oidc.ciba.grant.enabled": "true",
            "ciba.backchannel.token.delivery.mode": "poll",
        },
    )


def _ciba_ask(
    server: KeycloakUnderTest, realm: RealmUnderTest, client: dict[str, Any], username: str
) -> requests.Response:
    """The client's backchannel authentication request for `username`."""
    return requests.post(
        f"{oidc(server.url, realm.name)}/ext/ciba/auth",
        data={**_secret(client), "login_hint": username, "scope": "openid"},
        timeout=30,
    )


def _ciba_approve(
    server: KeycloakUnderTest, realm: RealmUnderTest, channel: CibaChannel, username: str
) -> None:
    """The device's answer to the one request it was sent for `username`: the user approves."""
    [(bearer, _body)] = channel.requests_for(username)
    approved = requests.post(
        f"{oidc(server.url, realm.name)}/ext/ciba/auth/callback",
        json={"status": "SUCCEED"},
        headers={"Authorization": f"Bearer {bearer}"},
        timeout=30,
    )
    assert approved.status_code == 200, approved.text


def _ciba_poll(
    server: KeycloakUnderTest,
    realm: RealmUnderTest,
    client: dict[str, Any],
    asked: requests.Response,
) -> requests.Response:
    return requests.post(
        f"{oidc(server.url, realm.name)}/token",
        data={
            **_secret(client),
            "grant_type": CIBA_GRANT,
            "auth_req_id": asked.json()["auth_req_id"],
        },
        timeout=30,
    )


def _secret(client: dict[str, Any]) -> dict[str, str]:
    return {"client_id": client["clientId"], "client_secret": client["secret"]}


def _ciba(
    server: KeycloakUnderTest,
    realm: RealmUnderTest,
    client: dict[str, Any],
    channel: CibaChannel,
    username: str,
) -> requests.Response:
    """One CIBA round trip for `username`, the device approving whatever it is asked:
    Keycloak's answer to the authentication request when it refuses it, else to the
    client's token poll."""
    asked = _ciba_ask(server, realm, client, username)
    if asked.status_code != 200:
        return asked
    _ciba_approve(server, realm, channel, username)
    return _ciba_poll(server, realm, client, asked)


def test_ciba_refuses_a_pending_account(
    keycloak_server: KeycloakUnderTest,
    realm: RealmUnderTest,
    services: Services,
    ciba_client: dict[str, Any],
    ciba_channel: CibaChannel,
) -> None:
    """CIBA runs no authentication flow: Keycloak asks the user's device and, on its
    approval, issues tokens, whatever the account's attributes. The project's resolver of
    CIBA users (keycloak_addon) knows no pending account, so Keycloak refuses the request
    before any device is asked, even one that approves everything."""
    who = enrol_student(services, "c")
    refused = _ciba(keycloak_server, realm, ciba_client, ciba_channel, who.user_id)
    assert refused.status_code == 400, refused.text
    assert refused.json() == {"error": "invalid_request", "error_description": "invalid_user"}
    assert "access_token" not in refused.text
    assert ciba_channel.requests_for(who.user_id) == []
    # The control: an active student, same client and device, gets tokens.
    student = active_student(services, "c")
    granted = _ciba(keycloak_server, realm, ciba_client, ciba_channel, student.username)
    assert granted.status_code == 200, granted.text
    assert "access_token" in granted.json()


def test_ciba_refuses_an_account_set_back_to_pending_before_the_poll(
    keycloak_server: KeycloakUnderTest,
    realm: RealmUnderTest,
    services: Services,
    ciba_client: dict[str, Any],
    ciba_channel: CibaChannel,
) -> None:
    """A request made while the account was active, the account set back to pending, the
    device approving after that: Keycloak's grant would still issue tokens (it reads only
    `enabled` and required actions); the JAR's CIBA grant reads the state at the poll."""
    student = active_student(services, "b")
    asked = _ciba_ask(keycloak_server, realm, ciba_client, student.username)
    assert asked.status_code == 200, asked.text
    services.keycloak.set_back_to_pending(student.id)
    _ciba_approve(keycloak_server, realm, ciba_channel, student.username)
    polled = _ciba_poll(keycloak_server, realm, ciba_client, asked)
    assert polled.status_code == 400, polled.text
    assert polled.json() == {
        "error": "invalid_grant",
        "error_description": "Account is not activated",
    }


def test_service_accounts_are_never_students(admin: KeycloakAdmin) -> None:
    """A client-credentials token is the client's own service-account user, which no
    activation ever touches: none holds an activation state."""
    for client in admin.get_clients():
        if not client.get("serviceAccountsEnabled"):
            continue
        user = admin.get_client_service_account_user(client["id"])
        full = admin.get_user(user["id"])
        assert ACTIVATION_STATE not in (full.get("attributes") or {}), client["clientId"]


def _open_grants(client: dict[str, Any]) -> set[str]:
    switches = {
        key
        for key in (
            "standardFlowEnabled",
            "implicitFlowEnabled",
            "directAccessGrantsEnabled",
            "serviceAccountsEnabled",
        )
        if client.get(key)
    }
    # Every grant switch Keycloak keeps as a client attribute (device, CIBA, token
    # exchange, and any a later release adds in the same style).
    attributes = {
        key
        for key, value in (client.get("attributes") or {}).items()
        if str(value).lower() == "true"
        and (key.endswith(".grant.enabled") or "token.exchange" in key)
    }
    return switches | attributes


def test_every_grant_a_client_enables_is_covered(admin: KeycloakAdmin) -> None:
    """Fails when a client of the realm opens a way to a token that no test proves closed
    to pending accounts: implicit (disabled realm-wide) among them."""
    uncovered = {
        client["clientId"]: sorted(_open_grants(client) - set(COVERED))
        for client in admin.get_clients()
        if not client.get("bearerOnly")
    }
    assert {k: v for k, v in uncovered.items() if v} == {}


def test_the_coverage_check_sees_an_uncovered_grant(
    admin: KeycloakAdmin, realm_changes: RealmChanges
) -> None:
    """The check above, shown failing: a client enabling the implicit flow (beside a
    covered grant, which it does not report), and a grant attribute no test names."""
    implicit = add_client(
        realm_changes,
        implicitFlowEnabled=True,
        redirectUris=["https://x.invalid/*"],
        attributes={"oidc.ciba.grant.enabled": "true"},
    )
    later = add_client(realm_changes, attributes={"example.later.grant.enabled": "true"})
    with pytest.raises(AssertionError) as failed:
        test_every_grant_a_client_enables_is_covered(admin)
    assert f"'{implicit['clientId']}': ['implicitFlowEnabled']" in str(failed.value)
    assert f"'{later['clientId']}': ['example.later.grant.enabled']" in str(failed.value)
