"""The provider's endpoints: discovery, authorize, token, JWKS and userinfo.

Only /oidc/authorize faces browsers; it validates the broker's request and hands the
browser to the activation flow, which answers it (see handoff.py). A request that names
an unknown client or another redirect URI, or has no `state`, is refused on a page of
our own: an error is only ever sent to the one registered redirect URI.
"""

from __future__ import annotations

import logging

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidRequestError, MissingAuthorizationError
from flask import Blueprint, current_app, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from provider.limits import limiter, sign_in_limit
from provider.oidc import handoff
from provider.oidc.server import AUTH_METHODS, SCOPES, Subject, user_info
from provider.oidc.signing_key import load_signing_key, public_jwks
from provider.services import services

bp = Blueprint("oidc", __name__, url_prefix="/oidc")
log = logging.getLogger(__name__)


@bp.get("/.well-known/openid-configuration")
def discovery() -> ResponseReturnValue:
    issuer = handoff.issuer()
    return jsonify(
        issuer=issuer,
        authorization_endpoint=f"{issuer}/authorize",
        token_endpoint=f"{issuer}/token",
        jwks_uri=f"{issuer}/jwks",
        userinfo_endpoint=f"{issuer}/userinfo",
        response_types_supported=["code"],
        grant_types_supported=["authorization_code"],
        subject_types_supported=["public"],
        id_token_signing_alg_values_supported=["RS256"],
        scopes_supported=list(SCOPES),
        token_endpoint_auth_methods_supported=list(AUTH_METHODS),
        code_challenge_methods_supported=["S256"],
        claims_supported=["sub", "preferred_username", "iss", "aud", "exp", "iat", "nonce"],
    )


@bp.get("/jwks")
def jwks() -> ResponseReturnValue:
    key = load_signing_key(services(current_app).settings.oidc.signing_key_file)
    return jsonify(public_jwks(key))


@bp.get("/authorize")
@limiter.limit(sign_in_limit)
def authorize() -> ResponseReturnValue:
    try:
        grant = handoff.server().get_consent_grant(end_user=None)
        if not request.args.get("state"):
            raise InvalidRequestError("missing state")  # no redirect: the client can't check
        # Stricter than the protocol's minimum, as the broker always can be: an OpenID
        # request with a nonce, and PKCE with S256.
        if "openid" not in (request.args.get("scope") or "").split() or not request.args.get(
            "nonce"
        ):
            raise InvalidRequestError(
                "openid scope and nonce required", redirect_uri=grant.redirect_uri
            )
        if (
            not request.args.get("code_challenge")
            or request.args.get("code_challenge_method") != "S256"
        ):
            raise InvalidRequestError("PKCE with S256 required", redirect_uri=grant.redirect_uri)
    except OAuth2Error as error:
        log.warning("authorization request refused", extra={"reason": error.error})
        if error.redirect_uri:  # the client and its redirect URI are ours: tell it
            error.state = request.args.get("state")
            return handoff.server().handle_error_response(None, error)
        return _refused()
    handoff.remember(handoff.params_of(request.args))
    return redirect(url_for("flow.start"))


def _refused() -> ResponseReturnValue:
    return render_template("error.html", message=handoff.INVALID_SIGN_IN), 400


@bp.post("/token")
def token() -> ResponseReturnValue:
    return handoff.server().create_token_response()


@bp.route("/userinfo", methods=["GET", "POST"])
def userinfo() -> ResponseReturnValue:
    protector = current_app.extensions["umpass.oidc_resource"]
    try:
        stored = protector.acquire_token(["openid"])
    except MissingAuthorizationError:
        return jsonify(error="invalid_token"), 401, {"WWW-Authenticate": "Bearer"}
    except OAuth2Error as error:
        return jsonify(error=error.error), error.status_code, {"WWW-Authenticate": "Bearer"}
    subject: Subject = stored.get_user()
    return jsonify(dict(user_info(subject)))
