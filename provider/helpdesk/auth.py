"""Staff sign-in through the realm, and the role checks every console route makes.

The realm's `umpass-helpdesk` client puts the staff member's realm roles in its tokens
(`roles`). Nothing else is trusted: the browser holds only the random id of a session
kept server-side (`StaffSession`, at most `STAFF_SESSION`), whose roles are re-read from
the realm on every request.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlencode

import requests
from authlib.integrations.flask_client import OAuth, OAuthError
from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import delete

from provider import audit
from provider.keycloak import IdentityServiceUnavailable
from provider.services import services
from provider.storage.models import StaffSession

HELPDESK = "activation-helpdesk"
ADMIN = "activation-admin"
STAFF_KEY = "umpass_staff_session"  # the server-side session's random id
STAFF_SESSION = 2 * 3600  # then sign in again, whatever the realm says
F = TypeVar("F", bound=Callable[..., ResponseReturnValue])

bp = Blueprint("helpdesk_auth", __name__, url_prefix="/helpdesk")


def install(app: Flask, keycloak_url: str, realm: str, client_id: str, secret: str) -> None:
    oauth = OAuth(app)
    oauth.register(
        "realm",
        client_id=client_id,
        client_secret=secret,
        server_metadata_url=f"{keycloak_url}/realms/{realm}/.well-known/openid-configuration",
        client_kwargs={"scope": "openid", "code_challenge_method": "S256"},
    )
    app.extensions["umpass.helpdesk_oauth"] = oauth
    app.register_blueprint(bp)


def _client() -> Any:
    return current_app.extensions["umpass.helpdesk_oauth"].realm


def _audit(actor: str, action: str, subject: str | None, **detail: Any) -> None:
    audit.record_now(services(current_app).sessions, actor, action, subject, **detail)


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def staff() -> dict[str, Any] | None:
    """The signed-in staff member and their roles as the realm says now, or None.

    Every request asks the realm again with the session's refresh token (a console is
    used by a few people; two small calls are cheap): a role removed, or a realm session
    ended (sign-out elsewhere, an admin's "sign out"), takes effect at once."""
    if "umpass_staff" in g:
        return g.umpass_staff
    g.umpass_staff = None
    session_id = session.get(STAFF_KEY)
    if not isinstance(session_id, str):
        return None
    sessions = services(current_app).sessions
    now = datetime.now(UTC)
    with sessions.begin() as db:
        row = db.get(StaffSession, _key(session_id))
        if row is None or row.expires_at <= now:
            return None
        refresh_token, username = row.refresh_token, row.username
    fresh = _ask_the_realm(refresh_token)
    with sessions.begin() as db:
        row = db.get(StaffSession, _key(session_id))
        if row is None:  # signed out meanwhile
            return None
        if fresh is None:
            db.delete(row)
            return None
        row.roles, row.refresh_token = fresh
    g.umpass_staff = {"username": username, "roles": fresh[0]}
    return g.umpass_staff


def _ask_the_realm(refresh_token: str) -> tuple[list[str], str] | None:
    """The console roles the realm gives now, and the next refresh token; None when the
    realm session is over."""
    try:
        token = _client().fetch_access_token(
            grant_type="refresh_token", refresh_token=refresh_token
        )
        claims = _client().userinfo(token=token)
    except OAuthError:  # invalid_grant: the realm session ended or the account went
        return None
    except (requests.RequestException, ValueError) as exc:
        # Keycloak unreachable or answering nonsense: the calm 503 page, and the staff
        # session stays (an outage must not sign everyone out, nor let anyone in).
        raise IdentityServiceUnavailable("the realm did not answer the session check") from exc
    roles = [r for r in claims.get("roles", []) if r in (HELPDESK, ADMIN)]
    return roles, token.get("refresh_token") or refresh_token


def requires(*roles: str) -> Callable[[F], F]:
    """Only a signed-in staff member holding one of `roles` gets through."""

    def decorate(view: F) -> F:
        @wraps(view)
        def checked(*args: Any, **kwargs: Any) -> ResponseReturnValue:
            who = staff()
            if who is None:
                session["umpass_staff_next"] = (
                    request.full_path if request.method == "GET" else None
                )
                return redirect(url_for("helpdesk_auth.login"))
            if not set(roles) & set(who["roles"]):
                rule = request.url_rule.rule if request.url_rule else request.endpoint
                _audit(f"staff:{who['username']}", "helpdesk.refused", None, page=rule)
                abort(403)
            return view(*args, **kwargs)

        return checked  # type: ignore[return-value]

    return decorate


@bp.get("/login")
def login() -> ResponseReturnValue:
    return _client().authorize_redirect(
        url_for("helpdesk_auth.callback", _external=True), nonce=secrets.token_urlsafe(16)
    )


@bp.get("/callback")
def callback() -> ResponseReturnValue:
    try:
        token = _client().authorize_access_token()
    except OAuthError:
        return render_template("error.html", message=_("Sign-in did not complete. Try again.")), 400
    claims = token.get("userinfo") or {}
    roles = [r for r in claims.get("roles", []) if r in (HELPDESK, ADMIN)]
    next_path = session.pop("umpass_staff_next", None)
    session.clear()  # nothing from before sign-in carries over
    username = claims.get("preferred_username", "")
    if not roles:
        _audit(f"staff:{username}", "staff.refused_no_role", None)
        return render_template(
            "error.html",
            message=_("Your account has no help-desk role. Ask an IT admin to grant one."),
        ), 403
    if not token.get("refresh_token"):
        return render_template("error.html", message=_("Sign-in did not complete. Try again.")), 400
    session_id = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    with services(current_app).sessions.begin() as db:
        db.add(
            StaffSession(
                id_hash=_key(session_id),
                username=username,
                roles=roles,
                refresh_token=token["refresh_token"],
                created_at=now,
                expires_at=now + timedelta(seconds=STAFF_SESSION),
            )
        )
    session[STAFF_KEY] = session_id
    session["umpass_staff_id_token"] = token.get("id_token", "")
    _audit(f"staff:{username}", "staff.signed_in", None, roles=sorted(roles))
    if next_path and next_path.startswith("/helpdesk/") and not next_path.startswith("//"):
        return redirect(next_path)
    return redirect(url_for("helpdesk.home"))


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """Out of the console AND out of the realm: on a shared help-desk PC the next person
    must not be signed straight back in by Keycloak's SSO session."""
    who = staff()
    id_token = session.pop("umpass_staff_id_token", "")
    session_id = session.pop(STAFF_KEY, None)
    if isinstance(session_id, str):
        # Gone from the server: a copy of the cookie is worth nothing from now on.
        with services(current_app).sessions.begin() as db:
            db.execute(delete(StaffSession).where(StaffSession.id_hash == _key(session_id)))
    if who:
        _audit(f"staff:{who['username']}", "staff.signed_out", None)
    end_session = _client().load_server_metadata().get("end_session_endpoint")
    if not end_session:
        return redirect(url_for("helpdesk.signed_out"))
    query = urlencode(
        {
            "client_id": _client().client_id,
            "post_logout_redirect_uri": url_for("helpdesk.signed_out", _external=True),
            **({"id_token_hint": id_token} if id_token else {}),
        }
    )
    # A page that moves on by itself, not a redirect: the pages' CSP `form-action 'self'`
    # stops a form's redirect chain into Keycloak.
    return render_template("helpdesk/leaving.html", url=f"{end_session}?{query}")
