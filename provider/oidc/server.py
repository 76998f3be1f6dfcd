"""authlib's authorization server, fitted to one client: the realm's identity broker.

Only the authorization-code grant, only `response_type=code`, only the exact redirect
URI Keycloak's broker endpoint has, a nonce on every request, PKCE checked when sent.
Codes live 60 seconds and are spent by the first token request that names them (an
atomic UPDATE), so a replayed code is refused and the tokens it bought are revoked.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin, scope_to_list
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant
from authlib.oauth2.rfc6750 import BearerTokenValidator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask
from sqlalchemy import delete, select, update

from provider.config import OidcSettings
from provider.keyed_hash import Purpose
from provider.oidc.signing_key import load_signing_key
from provider.services import Services
from provider.storage.models import OidcAccessToken, OidcAuthorizationCode

CODE_LIFETIME = timedelta(seconds=60)
TOKEN_LIFETIME = timedelta(minutes=5)
ID_TOKEN_SECONDS = 300
SCOPES = ("openid", "profile")
AUTH_METHODS = ("client_secret_post", "client_secret_basic")


@dataclass(frozen=True)
class Subject:
    """The one account an assertion may name: the one this browser just activated."""

    keycloak_id: str
    username: str
    # Set once a code is issued: what the assertion calls the account (see `broker_sub`).
    sub: str = ""


def broker_sub(code_hash: str) -> str:
    """A subject identifier of its own for every assertion, never the account's id.

    Keycloak links an account to the identity provider by `sub`; a later assertion with
    a new `sub` is never a linked sign-in but a first one, and the realm's first-broker
    flow accepts a first one only while the account's handoff ticket is open (set by the
    activation that this assertion finishes, spent by Keycloak as it links). So even a
    service made to assert an active student later cannot sign them in."""
    return f"umpass.{code_hash[:32]}"


class BrokerClient(ClientMixin):
    def __init__(self, settings: OidcSettings) -> None:
        self._settings = settings

    def get_client_id(self) -> str:
        return self._settings.broker_client_id

    def get_default_redirect_uri(self) -> str:
        return self._settings.broker_redirect_uri

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in scope_to_list(scope or "") if s in SCOPES)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri == self._settings.broker_redirect_uri

    def check_client_secret(self, client_secret: str) -> bool:
        expected = self._settings.broker_client_secret.encode()
        return hmac.compare_digest(expected, (client_secret or "").encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint == "token" and method in AUTH_METHODS

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


class IssuedCode:
    """A stored authorization code as authlib's grant reads it."""

    def __init__(self, row: OidcAuthorizationCode) -> None:
        self.row = row
        self.code_challenge = row.code_challenge
        self.code_challenge_method = row.code_challenge_method

    def get_redirect_uri(self) -> str:
        return self.row.redirect_uri

    def get_scope(self) -> str:
        return self.row.scope

    def get_nonce(self) -> str | None:
        return self.row.nonce

    def get_auth_time(self) -> int:
        return self.row.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> list[str]:
        return ["pwd"]


class ActivationCodeGrant(AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = list(AUTH_METHODS)
    svc: Services  # set by make_server

    def save_authorization_code(self, code: str, request: Any) -> None:
        subject: Subject = request.user
        data = request.payload.data
        now = datetime.now(UTC)
        with self.svc.sessions.begin() as session:
            session.execute(
                delete(OidcAuthorizationCode).where(OidcAuthorizationCode.expires_at < now)
            )
            session.add(
                OidcAuthorizationCode(
                    code_hash=self.svc.hasher.digest(Purpose.OIDC_CODE, code),
                    client_id=request.client.get_client_id(),
                    keycloak_id=subject.keycloak_id,
                    username=subject.username,
                    redirect_uri=data.get("redirect_uri") or "",
                    scope=request.scope or "",
                    nonce=data.get("nonce"),
                    code_challenge=data.get("code_challenge"),
                    code_challenge_method=data.get("code_challenge_method"),
                    auth_time=int(time.time()),
                    expires_at=now + CODE_LIFETIME,
                )
            )

    def query_authorization_code(self, code: str, client: BrokerClient) -> IssuedCode | None:
        """Spend the code now (whatever follows); a second use finds nothing."""
        code_hash = self.svc.hasher.digest(Purpose.OIDC_CODE, code or "")
        now = datetime.now(UTC)
        with self.svc.sessions.begin() as session:
            spent = session.execute(
                update(OidcAuthorizationCode)
                .where(
                    OidcAuthorizationCode.code_hash == code_hash,
                    OidcAuthorizationCode.client_id == client.get_client_id(),
                    OidcAuthorizationCode.used_at.is_(None),
                    OidcAuthorizationCode.expires_at > now,
                )
                .values(used_at=now)
            ).rowcount
            if spent != 1:
                # A replay: revoke whatever the first use obtained (RFC 6749 4.1.2).
                replayed = OidcAccessToken.code_hash == code_hash
                session.execute(delete(OidcAccessToken).where(replayed))
                return None
            row = session.get(OidcAuthorizationCode, code_hash)
        return IssuedCode(row) if row is not None else None

    def delete_authorization_code(self, authorization_code: IssuedCode) -> None:
        pass  # spent when queried

    def authenticate_user(self, authorization_code: IssuedCode) -> Subject:
        row = authorization_code.row
        return Subject(row.keycloak_id, row.username, broker_sub(row.code_hash))


class ActivationOpenIDCode(OpenIDCode):
    def __init__(self, svc: Services, issuer: str) -> None:
        super().__init__(require_nonce=True)
        self.svc = svc
        self.issuer = issuer

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        with self.svc.reads() as session:
            return (
                session.scalars(
                    select(OidcAuthorizationCode.code_hash).where(
                        OidcAuthorizationCode.nonce == nonce,
                        OidcAuthorizationCode.client_id == request.payload.client_id,
                    )
                ).first()
                is not None
            )

    def resolve_client_private_key(self, client: BrokerClient) -> Any:
        return load_signing_key(self.svc.settings.oidc.signing_key_file)

    def get_client_algorithm(self, client: BrokerClient) -> str:
        return "RS256"

    def get_client_claims(self, client: BrokerClient) -> dict[str, Any]:
        return {
            "iss": self.issuer,
            "aud": [client.get_client_id()],
            "exp": int(time.time()) + ID_TOKEN_SECONDS,
        }

    def get_encode_header(self, client: BrokerClient) -> dict[str, str]:
        key = load_signing_key(self.svc.settings.oidc.signing_key_file)
        return {"alg": "RS256", "kid": key.kid or ""}

    def generate_user_info(self, user: Subject, scope: str) -> UserInfo:
        return user_info(user)


def user_info(user: Subject) -> UserInfo:
    # The username only: Keycloak links by it. No email, so an address can never pick
    # the account.
    return UserInfo(sub=user.sub, preferred_username=user.username)


class StoredToken(TokenMixin):
    def __init__(self, row: OidcAccessToken) -> None:
        self.row = row

    def check_client(self, client: ClientMixin) -> bool:
        return client.get_client_id() == self.row.client_id

    def get_scope(self) -> str:
        return self.row.scope

    def get_expires_in(self) -> int:
        return int((self.row.expires_at - datetime.now(UTC)).total_seconds())

    def is_expired(self) -> bool:
        return self.row.expires_at <= datetime.now(UTC)

    def is_revoked(self) -> bool:
        return False

    def get_user(self) -> Subject:
        return Subject(self.row.keycloak_id, self.row.username, broker_sub(self.row.code_hash))


class TokenValidator(BearerTokenValidator):
    def __init__(self, svc: Services) -> None:
        super().__init__()
        self.svc = svc

    def authenticate_token(self, token_string: str) -> StoredToken | None:
        token_hash = self.svc.hasher.digest(Purpose.OIDC_TOKEN, token_string or "")
        with self.svc.reads() as session:
            row = session.get(OidcAccessToken, token_hash)
        return StoredToken(row) if row is not None else None


def make_server(
    app: Flask, svc: Services, issuer: str
) -> tuple[AuthorizationServer, ResourceProtector]:
    client = BrokerClient(svc.settings.oidc)

    def query_client(client_id: str) -> BrokerClient | None:
        return client if hmac.compare_digest(client_id or "", client.get_client_id()) else None

    def save_token(token: dict[str, Any], request: Any) -> None:
        subject: Subject = request.user
        code: IssuedCode = request.authorization_code
        with svc.sessions.begin() as session:
            now = datetime.now(UTC)
            session.execute(delete(OidcAccessToken).where(OidcAccessToken.expires_at < now))
            session.add(
                OidcAccessToken(
                    token_hash=svc.hasher.digest(Purpose.OIDC_TOKEN, token["access_token"]),
                    code_hash=code.row.code_hash,
                    client_id=client.get_client_id(),
                    keycloak_id=subject.keycloak_id,
                    username=subject.username,
                    scope=token.get("scope") or "openid",
                    expires_at=now + TOKEN_LIFETIME,
                )
            )

    app.config["OAUTH2_TOKEN_EXPIRES_IN"] = {
        "authorization_code": int(TOKEN_LIFETIME.total_seconds())
    }
    server = AuthorizationServer(app, query_client=query_client, save_token=save_token)
    grant = type("BoundCodeGrant", (ActivationCodeGrant,), {"svc": svc})
    server.register_grant(grant, [CodeChallenge(required=False), ActivationOpenIDCode(svc, issuer)])
    protector = ResourceProtector()
    protector.register_token_validator(TokenValidator(svc))
    return server, protector
