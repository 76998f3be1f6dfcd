"""A downstream campus service, for demos and tests: it signs people in through the realm
(authlib's OpenID Connect client, authorization code + PKCE, public client `umpass-demo`)
and shows who they are and their `activation_state`. With UMPASS_DEMO_WEBHOOK_SECRET set it
also takes UMPASS's events at /demo/hooks (demo_webhooks.py).

    python -m devstack.demo_app [--port 5001]      (scripts/dev starts it)
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys

from authlib.integrations.flask_client import OAuth, OAuthError
from flask import Blueprint, Flask, redirect, render_template_string, request, session, url_for
from flask.typing import ResponseReturnValue

from devstack import demo_webhooks

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Campus demo app</title>
<style>body{font:18px/1.5 system-ui,sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem}
a.button{display:inline-block;background:#1d4f91;color:#fff;padding:10px 18px;text-decoration:none}
dt{font-weight:700}</style></head><body>
<h1>Campus demo app</h1>
{% if failed %}<p id="failed" role="alert">Sign-in did not complete. Try again.</p>{% endif %}
{% if user %}
  <p id="who">Signed in as <strong>{{ user.preferred_username }}</strong></p>
  <dl><dt>Name</dt><dd>{{ user.name }}</dd><dt>Email</dt><dd>{{ user.email }}</dd>
      <dt>activation_state</dt><dd id="state">{{ user.activation_state or "(none)" }}</dd></dl>
  <p><a href="{{ url_for('demo.logout') }}">Sign out of this app</a></p>
{% else %}
  <p>This stands for any campus service that uses UMPASS single sign-on.</p>
  <p><a class="button" href="{{ url_for('demo.login') }}">Sign in with UMPASS</a></p>
{% endif %}
</body></html>"""


def create_demo_app(
    keycloak_url: str, realm: str, prefix: str = "/demo", webhook_secret: str = ""
) -> Flask:
    app = Flask(__name__)
    app.secret_key = secrets.token_urlsafe(32)
    # Cookies ignore ports: on one host the service's "session" cookie would replace ours.
    app.config["SESSION_COOKIE_NAME"] = "umpass_demo_session"
    oauth = OAuth(app)
    oauth.register(
        "umpass",
        client_id="umpass-demo",
        server_metadata_url=f"{keycloak_url}/realms/{realm}/.well-known/openid-configuration",
        client_kwargs={
            "scope": "openid profile email",
            "code_challenge_method": "S256",
            "token_endpoint_auth_method": "none",  # a public client: PKCE instead of a secret
        },
    )
    bp = Blueprint("demo", __name__, url_prefix=prefix)

    @bp.get("/")
    def home() -> ResponseReturnValue:
        return render_template_string(PAGE, user=session.get("user"))

    @bp.get("/login")
    def login() -> ResponseReturnValue:
        # A campus app that knows who is signing in may say so (OIDC login_hint): Keycloak
        # pre-fills its username and, with the provider's "loginHint" on, passes it on to
        # activation, which pre-fills its user ID (and trusts it no further).
        extra = {"login_hint": hint[:64]} if (hint := request.args.get("login_hint")) else {}
        return oauth.umpass.authorize_redirect(url_for("demo.callback", _external=True), **extra)

    @bp.get("/callback")
    def callback() -> ResponseReturnValue:
        try:
            token = oauth.umpass.authorize_access_token()
        except OAuthError:  # an error from Keycloak, or a state that is not ours
            return render_template_string(PAGE, user=None, failed=True), 400
        session["user"] = dict(token["userinfo"])
        return redirect(url_for("demo.home"))

    @bp.get("/logout")
    def logout() -> ResponseReturnValue:
        session.clear()
        return redirect(url_for("demo.home"))

    app.register_blueprint(bp)
    if webhook_secret:  # UMPASS's events (demo_webhooks.py): POST {prefix}/hooks
        app.register_blueprint(demo_webhooks.receiver(webhook_secret), url_prefix=prefix)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="demo_app")
    parser.add_argument("--port", type=int, default=5001)
    # Behind a TLS proxy (scripts/stack): the callback URL it sends must say https.
    parser.add_argument("--url-scheme", choices=["http", "https"], default="http")
    args = parser.parse_args(argv)
    from waitress import serve

    app = create_demo_app(
        os.environ.get("UMPASS_KEYCLOAK_URL", "http://127.0.0.1:18080"),
        os.environ.get("UMPASS_REALM", "umpass"),
        webhook_secret=os.environ.get("UMPASS_DEMO_WEBHOOK_SECRET", ""),
    )
    print(f"demo app on http://127.0.0.1:{args.port}/demo/", file=sys.stderr, flush=True)
    serve(
        app, host="127.0.0.1", port=args.port, threads=4, ident="demo", url_scheme=args.url_scheme
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
