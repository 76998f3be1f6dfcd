"""The service as the realm's activation identity provider, at the protocol level.

Keycloak's side is in tests/browser/test_first_sign_in.py; here the broker's requests
are made by hand, so every refusal can be aimed at exactly one rule.
"""

from __future__ import annotations

import html
import re
import secrets
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import update
from werkzeug.test import TestResponse

from provider.config import Settings
from provider.keyed_hash import Purpose
from provider.oidc import handoff
from provider.oidc.server import CODE_LIFETIME
from provider.services import Services
from provider.storage.models import OidcAccessToken, OidcAuthorizationCode
from tests.support.broker import broker_request, pkce
from tests.support.flow_at import put_flow_at
from tests.support.flow_client import FlowClient, StudentDetails, csrf_token
from tests.support.inbox import Inbox
from tests.support.students import enrol_student

PASSWORD = "lantern orchard velvet 2031"


class Broker:
    """Plays Keycloak's broker against the provider: authorize, then token."""

    def __init__(self, client: FlaskClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.verifier, challenge = pkce()
        self.params = broker_request(settings, challenge)

    def authorize(self, **changes: str | None) -> TestResponse:
        params = {k: v for k, v in {**self.params, **changes}.items() if v is not None}
        return self.client.get("/oidc/authorize", query_string=params)

    def token(self, code: str, **changes: str) -> TestResponse:
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.settings.oidc.broker_redirect_uri,
            "client_id": self.settings.oidc.broker_client_id,
            "client_secret": self.settings.oidc.broker_client_secret,
            "code_verifier": self.verifier,
            **changes,
        }
        return self.client.post("/oidc/token", data=data)


@pytest.fixture
def student(services: Services) -> StudentDetails:
    return enrol_student(services, "o")


def _activate_with_sign_in_waiting(
    app: Flask, settings: Settings, inbox: Inbox, who: StudentDetails
) -> tuple[Broker, FlowClient, str]:
    """A broker request, then the activation's last step; returns the answer's Location.

    The request is taken from the browser's session into a flow put at the password step,
    as identify carries it (the journey itself: `test_stop_and_return_answers_access_denied`
    and tests/browser/test_first_sign_in.py)."""
    client = app.test_client()
    broker = Broker(client, settings)
    sent = broker.authorize()
    assert sent.status_code == 302 and sent.headers["Location"].endswith("/activate/")
    assert client.get("/activate/").status_code == 302  # the request joins this browser
    with client.session_transaction() as browser_session:
        waiting = browser_session.pop(handoff.SESSION_KEY)
    flow = put_flow_at(app, inbox, "password", who, data={"caller": waiting})
    assert flow.set_password(PASSWORD).headers["Location"].endswith("/activate/done")
    end = flow.page("done")
    # The student's last page shows the user ID to sign in with, says it moves on and
    # when, then moves on by itself (no script needed) well inside the code's lifetime.
    body = end.get_data(as_text=True)
    assert f'<strong class="user-id" id="user-id">{who.user_id}</strong>' in body
    wait = handoff.SHOW_USER_ID_SECONDS
    assert f"In {wait} seconds we will sign you in to where you started" in body
    assert 2 <= wait <= CODE_LIFETIME.total_seconds() / 4
    return broker, flow, answered_at(end, wait=wait)


def answered_at(page: TestResponse, wait: int = 0) -> str:
    """Where an answer page sends the browser (meta refresh after `wait` seconds, and
    the same link)."""
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    refresh = re.search(rf'http-equiv="refresh" content="{wait};url=([^"]+)"', body)
    link = re.search(r'<a class="button" href="([^"]+)"', body)
    assert refresh and link and refresh.group(1) == link.group(1)
    return html.unescape(refresh.group(1))


def _code_from(location: str, settings: Settings, state: str) -> str:
    assert location.startswith(settings.oidc.broker_redirect_uri + "?")
    query = parse_qs(urlparse(location).query)
    assert query["state"] == [state]
    return query["code"][0]


def test_discovery_and_a_persisted_signing_key(client: FlaskClient, settings: Settings) -> None:
    doc = client.get("/oidc/.well-known/openid-configuration").get_json()
    issuer = settings.base_url + "/oidc"
    assert doc["issuer"] == issuer
    assert doc["authorization_endpoint"] == issuer + "/authorize"
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    keys = client.get("/oidc/jwks").get_json()["keys"]
    assert len(keys) == 1 and keys[0]["kty"] == "RSA" and "d" not in keys[0]
    key_file = Path(settings.oidc.signing_key_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_identity_only_after_activation_then_the_code_is_spent(
    app: Flask, settings: Settings, inbox: Inbox, student: StudentDetails, services: Services
) -> None:
    broker, flow, location = _activate_with_sign_in_waiting(app, settings, inbox, student)
    code = _code_from(location, settings, broker.params["state"])

    tokens = broker.token(code)
    assert tokens.status_code == 200, tokens.get_data(as_text=True)
    body = tokens.get_json()
    jwks = KeySet.import_key_set(flow.client.get("/oidc/jwks").get_json())
    claims = jwt.decode(body["id_token"], jwks, algorithms=["RS256"]).claims
    user = services.keycloak.find_user(student.user_id)
    assert user is not None
    assert claims["iss"] == settings.base_url + "/oidc"
    assert claims["aud"] == [settings.oidc.broker_client_id]
    assert claims["nonce"] == broker.params["nonce"]
    # An identifier of this assertion's own, never the account id: Keycloak can link it
    # once, and a later assertion is a first sign-in again (tests/browser/test_first_sign_in).
    assert claims["sub"].startswith("umpass.") and user.id not in claims["sub"]
    assert claims["preferred_username"] == student.user_id
    assert "email" not in claims  # Keycloak links by username only

    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    info = flow.client.get("/oidc/userinfo", headers=bearer)
    assert info.get_json() == {"sub": claims["sub"], "preferred_username": student.user_id}

    replay = broker.token(code)
    assert replay.status_code == 400 and replay.get_json()["error"] == "invalid_grant"
    # The replay revoked what the first use bought.
    assert flow.client.get("/oidc/userinfo", headers=bearer).status_code == 401

    # The done page, reloaded, asserts nothing more.
    again = flow.page("done")
    assert again.status_code == 200 and b"Your account is active" in again.data
    assert b'http-equiv="refresh"' not in again.data  # no second answer to the broker
    assert f'id="user-id">{student.user_id}<'.encode() in again.data


def test_a_finished_flow_is_never_asserted_for_the_next_sign_in(
    app: Flask, settings: Settings, inbox: Inbox, student: StudentDetails
) -> None:
    _, flow, _ = _activate_with_sign_in_waiting(app, settings, inbox, student)
    next_sign_in = Broker(flow.client, settings)
    assert next_sign_in.authorize().status_code == 302
    fresh = flow.page("")
    assert fresh.headers["Location"].endswith("/activate/identify")  # a new flow
    assert flow.page("done").headers["Location"].endswith("/activate/identify")


def _open_flow_then_a_sign_in(
    app: Flask, settings: Settings, inbox: Inbox, who: StudentDetails
) -> tuple[FlowClient, str]:
    """Someone's flow left open at the policies, then any page sends the browser to
    /oidc/authorize: the student is asked, nothing is thrown away yet."""
    client = app.test_client()
    flow = FlowClient(client, inbox)
    assert flow.identify(who).status_code == 302
    assert Broker(client, settings).authorize().status_code == 302
    asked = flow.page("")
    body = asked.get_data(as_text=True)
    assert asked.status_code == 200 and "Another sign-in started" in body
    token = re.search(r'name="csrf_token" value="([^"]+)"', body)
    assert token is not None
    assert flow.page("policies").status_code == 200  # the open flow is still there
    return flow, token.group(1)


def test_a_sign_in_arriving_mid_flow_starts_afresh_when_the_student_says_so(
    app: Flask, settings: Settings, inbox: Inbox, student: StudentDetails
) -> None:
    flow, token = _open_flow_then_a_sign_in(app, settings, inbox, student)
    switched = flow.client.post("/activate/sign-in/switch", data={"csrf_token": token})
    assert switched.headers["Location"].endswith("/activate/identify")
    assert flow.page("policies").headers["Location"].endswith("/activate/identify")
    waiting = "we will take you back to where you were signing in"
    assert waiting in flow.page("identify").get_data(as_text=True)  # kept for who comes next


def test_a_sign_in_arriving_mid_flow_can_be_set_aside(
    app: Flask, settings: Settings, inbox: Inbox, student: StudentDetails
) -> None:
    flow, token = _open_flow_then_a_sign_in(app, settings, inbox, student)
    kept = flow.client.post("/activate/sign-in/keep", data={"csrf_token": token})
    assert kept.headers["Location"].endswith("/activate/policies")
    assert flow.page("").headers["Location"].endswith("/activate/policies")  # not asked again
    assert "Stop and return to the sign-in page" not in flow.page("policies").get_data(as_text=True)


def test_refused_requests_never_redirect_anywhere_else(
    client: FlaskClient, settings: Settings
) -> None:
    broker = Broker(client, settings)
    for changes in (
        {"redirect_uri": "https://evil.example/cb"},
        {"redirect_uri": settings.oidc.broker_redirect_uri + "/"},
        {"client_id": "someone-else"},
        {"state": None},
    ):
        response = broker.authorize(**changes)
        assert response.status_code == 400, changes
        assert "Location" not in response.headers
        assert b"This sign-in link is not valid" in response.data
    # A request that is wrong but names our client and its URI is answered there.
    wrong_type = broker.authorize(response_type="token")
    assert wrong_type.headers["Location"].startswith(settings.oidc.broker_redirect_uri)
    assert "error=unsupported_response_type" in wrong_type.headers["Location"]
    for changes in (
        {"nonce": None},
        {"scope": "profile"},
        {"code_challenge": None, "code_challenge_method": None},
        {"code_challenge_method": "plain"},
    ):
        refused = broker.authorize(**changes)
        location = refused.headers["Location"]
        assert location.startswith(settings.oidc.broker_redirect_uri + "?"), changes
        assert "error=invalid_request" in location and "code=" not in location
        assert f"state={broker.params['state']}" in location


def test_token_endpoint_refusals(
    app: Flask, settings: Settings, inbox: Inbox, services: Services
) -> None:
    forged = Broker(app.test_client(), settings).token(secrets.token_urlsafe(36))
    assert forged.status_code == 400 and forged.get_json()["error"] == "invalid_grant"

    who = enrol_student(services, "o")
    broker, _, location = _activate_with_sign_in_waiting(app, settings, inbox, who)
    code = _code_from(location, settings, broker.params["state"])
    bad_secret = broker.token(code, client_secret="x" * 32)
    assert bad_secret.status_code == 401 and bad_secret.get_json()["error"] == "invalid_client"
    wrong_verifier = broker.token(code, code_verifier=pkce()[0])
    assert wrong_verifier.get_json()["error"] == "invalid_grant"
    # Any failed use spends the code: the right request afterwards is refused too.
    assert broker.token(code).get_json()["error"] == "invalid_grant"

    who = enrol_student(services, "o")
    broker, _, location = _activate_with_sign_in_waiting(app, settings, inbox, who)
    code = _code_from(location, settings, broker.params["state"])
    elsewhere = broker.token(code, redirect_uri=settings.oidc.broker_redirect_uri + "x")
    assert elsewhere.get_json()["error"] == "invalid_grant"


def test_stop_and_return_answers_access_denied(
    app: Flask, settings: Settings, inbox: Inbox, student: StudentDetails
) -> None:
    client = app.test_client()
    broker = Broker(client, settings)
    broker.authorize()
    flow = FlowClient(client, inbox)
    page = client.get("/activate/identify")
    assert b"Stop and return to the sign-in page" in page.data
    assert flow.identify(student).status_code == 302
    token = csrf_token(client.get("/activate/policies"))
    location = answered_at(client.post("/activate/cancel", data={"csrf_token": token}))
    assert location.startswith(settings.oidc.broker_redirect_uri)
    query = parse_qs(urlparse(location).query)
    assert query["error"] == ["access_denied"] and query["state"] == [broker.params["state"]]
    assert "code" not in query
    # Once answered, the button is gone and the flow carries on on its own.
    assert b"Stop and return" not in client.get("/activate/policies").data


def _age(services: Services, model: type, key: str, value: str) -> None:
    """Move a stored code's or token's expiry into the past (what 60 s or 5 min would do)."""
    with services.sessions.begin() as session:
        session.execute(
            update(model)
            .where(getattr(model, key) == value)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )


def test_an_expired_code_buys_nothing(
    app: Flask, settings: Settings, inbox: Inbox, student: StudentDetails, services: Services
) -> None:
    broker, _flow, location = _activate_with_sign_in_waiting(app, settings, inbox, student)
    code = _code_from(location, settings, broker.params["state"])
    code_hash = services.hasher.digest(Purpose.OIDC_CODE, code)
    _age(services, OidcAuthorizationCode, "code_hash", code_hash)
    late = broker.token(code)
    assert late.status_code == 400 and late.get_json()["error"] == "invalid_grant"
    assert "id_token" not in late.get_json()


def test_an_expired_access_token_reads_nothing(
    app: Flask, settings: Settings, inbox: Inbox, student: StudentDetails, services: Services
) -> None:
    broker, flow, location = _activate_with_sign_in_waiting(app, settings, inbox, student)
    tokens = broker.token(_code_from(location, settings, broker.params["state"])).get_json()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert flow.client.get("/oidc/userinfo", headers=bearer).status_code == 200
    token_hash = services.hasher.digest(Purpose.OIDC_TOKEN, tokens["access_token"])
    _age(services, OidcAccessToken, "token_hash", token_hash)
    assert flow.client.get("/oidc/userinfo", headers=bearer).status_code == 401


def test_a_nonce_is_answered_once(
    app: Flask, settings: Settings, inbox: Inbox, student: StudentDetails
) -> None:
    broker, _flow, location = _activate_with_sign_in_waiting(app, settings, inbox, student)
    assert "code=" in location
    # The same request again (its nonce already bought a code): an error to the broker,
    # never a second code.
    again = broker.authorize()
    assert again.status_code == 302
    query = parse_qs(urlparse(again.headers["Location"]).query)
    assert query.get("error") == ["invalid_request"] and "code" not in query


# -- Keycloak's login_hint: a pre-fill of the user ID, never trusted ------------------------


def _identify_page_after(
    app: Flask, settings: Settings, hint: str | None
) -> tuple[FlaskClient, str]:
    client = app.test_client()
    assert Broker(client, settings).authorize(login_hint=hint).status_code == 302
    assert client.get("/activate/").status_code == 302
    page = client.get("/activate/identify")
    assert page.status_code == 200
    return client, page.get_data(as_text=True)


def _user_id_box(body: str) -> str:
    box = re.search(r'<input [^>]*id="user_id"[^>]*>', body)
    assert box is not None
    return box.group(0)


def test_the_login_hint_pre_fills_the_user_id_and_proves_nothing(
    app: Flask, settings: Settings, inbox: Inbox, student: StudentDetails
) -> None:
    typed_at_keycloak = f"  {student.user_id.upper()} "  # as a student may type it
    client, body = _identify_page_after(app, settings, typed_at_keycloak)
    assert f'value="{student.user_id}"' in _user_id_box(body)
    # Only a pre-fill: without the code, date and digits nobody is identified.
    flow = FlowClient(client, inbox)
    refused = flow.identify(student, activation_code="AAAAA-BBBBB-CCCCC")
    assert refused.status_code == 400
    assert "We could not match those details" in refused.get_data(as_text=True)
    assert flow.identify(student).headers["Location"].endswith("/activate/policies")


@pytest.mark.parametrize(
    "hint",
    [
        '"><script>alert(1)</script>',
        'dc12345" autofocus onfocus="x',
        "x" * 5000,
        "dc12345@example.edu",
        "dc 1<b>",
        "",
        None,
    ],
)
def test_a_hint_that_cannot_be_a_user_id_is_dropped(
    app: Flask, settings: Settings, hint: str | None
) -> None:
    _, body = _identify_page_after(app, settings, hint)
    assert 'value=""' in _user_id_box(body)
    assert "<script>alert" not in body and "onfocus" not in body
