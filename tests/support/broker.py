"""An authorization request to the service's OIDC provider, as Keycloak's broker (or any
page that links there) sends it."""

from __future__ import annotations

import base64
import hashlib
import secrets

from provider.config import Settings


def pkce() -> tuple[str, str]:
    """A PKCE verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def broker_request(settings: Settings, challenge: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": settings.oidc.broker_client_id,
        "redirect_uri": settings.oidc.broker_redirect_uri,
        "scope": "openid",
        "state": secrets.token_urlsafe(16),
        "nonce": secrets.token_urlsafe(16),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
