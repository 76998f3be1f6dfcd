"""A real sign-in at Keycloak's login page, the way a browser does it, without a browser.

Authorization-code flow with PKCE against a public client: load the login form, post
the username, then the password, to each form's action, and exchange the code. Used to prove
that a password the gateway set really works (and is not temporary).
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs, urlparse

import requests

_FORM_ACTION = re.compile(r'<form[^>]*id="kc-form-login"[^>]*action="([^"]+)"')


@dataclass
class LoginResult:
    ok: bool
    tokens: dict | None = None
    page: str = ""
    required_action: bool = False
    location: str = ""  # where Keycloak sent the browser instead (e.g. to activation)
    session: requests.Session | None = None  # its cookies, to follow `location`


# The callback of the realm's demo client (keycloak_config/clients/umpass-demo.json): its
# base names a port the session's fixtures bound before applying the realm (tests/conftest.py).
_demo_callback: str | None = None


def use_demo_base(base: str) -> None:
    """Set where the run's realms send the demo client back to (the `realm` fixture does)."""
    global _demo_callback
    _demo_callback = f"{base.rstrip('/')}/callback"


def demo_callback() -> str:
    if _demo_callback is None:
        raise RuntimeError("no demo client yet: the session's `realm` fixture sets it")
    return _demo_callback


def authorization_request(client_id: str, redirect_uri: str) -> tuple[dict[str, str], str]:
    """The query of an authorization-code request with PKCE (S256), and its verifier."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    params = {
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "response_type": "code",
        "scope": "openid",
        "state": secrets.token_urlsafe(8),
        "code_challenge": challenge.decode(),
        "code_challenge_method": "S256",
    }
    return params, verifier


def sign_in(
    server_url: str,
    realm: str,
    username: str,
    password: str,
    *,
    client_id: str = "umpass-demo",
    redirect_uri: str | None = None,
) -> LoginResult:
    redirect_uri = redirect_uri or demo_callback()
    session = requests.Session()
    params, verifier = authorization_request(client_id, redirect_uri)
    base = f"{server_url}/realms/{realm}/protocol/openid-connect"
    page = session.get(f"{base}/auth", params=params, timeout=30)
    page.raise_for_status()
    # Keycloak marks its login cookies Secure even on plain-HTTP loopback; browsers treat
    # 127.0.0.1 as a secure context and send them, requests does not unless told.
    for cookie in session.cookies:
        cookie.secure = False
    # The realm's browser flow asks for the username first, then (for accounts that are
    # not pending) the password on a page of its own.
    answer = post_login_form(session, page.text, {"username": username})
    if answer.status_code == 200 and 'name="password"' in answer.text:
        answer = post_login_form(session, answer.text, {"password": password, "credentialId": ""})
    location = answer.headers.get("Location", "")
    if answer.status_code != 302 or not location.startswith(redirect_uri):
        # A 200 is the form again (wrong password) or a required action (e.g. a temporary
        # password asking to be changed).
        required = (
            "login-actions/required-action" in answer.text or "UPDATE_PASSWORD" in answer.text
        )
        return LoginResult(
            ok=False, page=answer.text, required_action=required, location=location, session=session
        )
    code = parse_qs(urlparse(location).query)["code"][0]
    tokens = session.post(
        f"{base}/token",
        data={
            "grant_type": "authorization_code",
            "client_id": client_id,
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        },
        timeout=30,
    )
    tokens.raise_for_status()
    return LoginResult(ok=True, tokens=tokens.json())


def post_login_form(
    session: requests.Session, page: str, data: dict[str, str]
) -> requests.Response:
    match = _FORM_ACTION.search(page)
    assert match, "Keycloak did not show its login form"
    return session.post(html.unescape(match.group(1)), data=data, allow_redirects=False, timeout=30)
