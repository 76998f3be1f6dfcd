"""Keycloak's authorization request: kept while the student activates, answered once.

The broker's request is validated at /oidc/authorize and kept in the signed session
cookie until the student is identified, then in the flow's server-side state (see
`flow_glue`, which carries it through the flow). An
answer naming an account is issued at one point only: the "done" step of a flow whose
activation has just succeeded, for that flow's account, once (the request is removed
from the flow with compare-and-set before the code is made). A request that arrives
while the browser holds an identified flow, finished or not, starts a fresh one: an
earlier student's flow on a shared computer is never asserted for the next one.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from flask import current_app, render_template, session
from flask.typing import ResponseReturnValue
from flask_babel import lazy_gettext as _l

from provider.oidc.server import Subject

SESSION_KEY = "umpass_oidc_request"
# How long the end page of a first sign-in shows the user ID before it moves on.
SHOW_USER_ID_SECONDS = 6
INVALID_SIGN_IN = _l(
    "This sign-in link is not valid. Go back to the page you were signing in to and try again."
)
LOGIN_HINT = "login_hint"
# What an authorization request may carry through the flow, and how long each may be.
# `login_hint` (the user ID typed at Keycloak, when it forwards one) only pre-fills the
# identify form: it is never trusted and asserts nothing.
PARAMS = {
    LOGIN_HINT: 64,
    "response_type": 16,
    "client_id": 64,
    "redirect_uri": 512,
    "scope": 256,
    "state": 2048,
    "nonce": 256,
    "code_challenge": 128,
    "code_challenge_method": 16,
}


class StoredAuthorizationRequest(OAuth2Request):
    """A validated authorization request, replayed to authlib when it is answered."""

    def __init__(self, params: dict[str, str], issuer: str) -> None:
        super().__init__("GET", f"{issuer}/authorize?{urlencode(params)}")
        self.payload = BasicOAuth2Payload(params)
        self._args = params

    @property
    def args(self) -> dict[str, str]:
        return self._args


def server() -> AuthorizationServer:
    return current_app.extensions["umpass.oidc_server"]


def issuer() -> str:
    return current_app.extensions["umpass.oidc_issuer"]


def params_of(args: Any) -> dict[str, str]:
    return {k: str(args[k])[:limit] for k, limit in PARAMS.items() if args.get(k)}


def remember(params: dict[str, str]) -> None:
    """Hold a validated request until the browser reaches the flow (newest wins)."""
    session[SESSION_KEY] = params


def take_from_session() -> dict[str, str] | None:
    return session.pop(SESSION_KEY, None)


def answer(params: dict[str, str], subject: Subject | None) -> ResponseReturnValue:
    """Send the browser to the broker: a code for `subject`, or access_denied when None.

    The caller has already removed `params` from where they were kept, so each request
    is answered once. The answer is a page that moves on by itself (meta refresh, no
    script; after a few seconds when it shows the user ID to sign in with) rather than a
    redirect: the last form submit would otherwise carry a
    redirect chain through Keycloak to the campus app, which the pages' CSP
    `form-action 'self'` rightly stops."""
    request = StoredAuthorizationRequest(params, issuer())
    auth = server()
    grant = auth.get_authorization_grant(request)
    response = auth.create_authorization_response(request=request, grant_user=subject, grant=grant)
    location = response.headers.get("Location")
    if response.status_code != 302 or not location:
        # No longer a valid request (e.g. its nonce was used meanwhile): say so plainly,
        # never authlib's JSON.
        return render_template("error.html", message=INVALID_SIGN_IN), 400
    if subject is None:
        return render_template("oidc/return.html", url=location, wait_seconds=0, user_id=None)
    # Signed in: long enough to read the user ID (well inside the code's lifetime).
    return render_template(
        "oidc/return.html",
        url=location,
        wait_seconds=SHOW_USER_ID_SECONDS,
        user_id=subject.username,
    )
