"""UMPASS Activation: student account activation in front of a Keycloak realm."""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import Flask, render_template
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError

from provider import form_input, i18n, limits, security_headers
from provider.config import Settings, load_settings
from provider.csrf import OriginCheckedCSRF
from provider.flows import runner as flow_runner
from provider.flows import views as flow_views
from provider.flows.activation import make_engine
from provider.keycloak import IdentityServiceUnavailable, KeycloakGateway
from provider.logging_setup import configure_logging
from provider.oidc import flow_glue
from provider.oidc import views as oidc_views
from provider.oidc.server import make_server
from provider.oidc.signing_key import load_signing_key
from provider.policies import review as policy_review
from provider.proxy import TrustedProxies
from provider.recovery import views as recovery_views
from provider.services import Services, install

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 64 * 1024


def create_app(
    settings: Settings | None = None, *, gateway: KeycloakGateway | None = None
) -> Flask:
    """Application factory: settings from the environment unless given."""
    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = Flask(__name__)
    secure = settings.base_url.startswith("https://")
    app.config.update(
        SECRET_KEY=settings.secret_key,
        TESTING=settings.testing,
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        SESSION_COOKIE_NAME="umpass_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure,
        PREFERRED_URL_SCHEME="https" if secure else "http",
    )
    app.config.update(
        UMPASS_BASE_URL=settings.base_url,
        WTF_CSRF_TIME_LIMIT=None,  # the flow's own expiry bounds a form's life
    )
    app.wsgi_app = TrustedProxies(  # type: ignore[method-assign]
        app.wsgi_app, settings.trusted_proxies, https=secure
    )
    svc = Services.assemble(settings, gateway=gateway)
    install(app, svc)
    activation_engine = make_engine(
        svc.sessions,
        svc.hasher,
        idle=timedelta(minutes=settings.flow_idle_minutes),
        reads=svc.reads,
    )
    app.jinja_env.add_extension("jinja2.ext.do")
    i18n.install(app)
    csrf = OriginCheckedCSRF(app)
    # After CSRF's check; OAuth's back channel answers its own errors (in JSON).
    form_input.install(app, own_body_blueprints=(oidc_views.bp.name,))
    limits.install(app, settings)
    security_headers.install(app)

    from provider import health, pages

    app.register_blueprint(health.bp)
    app.register_blueprint(pages.bp)
    flow_runner.install(app, flow_views.routes, activation_engine)
    recovery_views.install(app, svc)
    policy_review.install(app, svc)
    if settings.helpdesk_client_secret:
        from provider.helpdesk import auth as helpdesk_auth
        from provider.helpdesk import policy_pages as helpdesk_policies
        from provider.helpdesk import views as helpdesk_views

        helpdesk_auth.install(
            app,
            settings.keycloak.url,
            settings.keycloak.realm,
            settings.helpdesk_client_id,
            settings.helpdesk_client_secret,
        )
        app.register_blueprint(helpdesk_views.bp)
        app.register_blueprint(helpdesk_policies.bp)
        # Shows what `umpass realm-check` stored; never reads the realm (no monitor secret).
        from provider.realm_health import views as realm_health_views

        realm_health_views.install(app)
    if settings.development:  # never in production: the page shows live codes
        from provider import dev_mail

        app.config["UMPASS_DEV_MAIL_DIR"] = settings.dev_mail_dir
        app.config["UMPASS_DEV_SMS_OUTBOX"] = settings.delivery.sms_outbox
        app.register_blueprint(dev_mail.bp)
    if settings.metrics_token:
        from provider import metrics

        app.config["UMPASS_METRICS_TOKEN"] = settings.metrics_token
        app.register_blueprint(metrics.bp)
    if settings.oidc.enabled:
        _install_oidc_provider(app, svc)
        csrf.exempt(oidc_views.bp)  # back-channel calls from Keycloak; authorize is a GET

    @app.errorhandler(CSRFError)
    def csrf_error(_exc: CSRFError) -> ResponseReturnValue:
        return render_template(
            "error.html",
            message=_(
                "This page was open too long or came from somewhere else. "
                "Go back, reload the page and try again. Nothing was changed."
            ),
        ), 400

    @app.errorhandler(429)
    def too_many(_exc: Exception) -> ResponseReturnValue:
        return (
            render_template(
                "error.html",
                message=_("Too many tries from your network. Wait a minute and try again."),
            ),
            429,
            {"Retry-After": "60"},
        )

    def unavailable(exc: Exception) -> ResponseReturnValue:
        # Keycloak, the database (down, restarting, or no free connection) or the limit
        # store: nothing half-done stays behind (each write is one transaction, limited
        # actions fail closed), and the student tries again in a moment.
        log.error("dependency unavailable", extra={"reason": type(exc).__name__})
        return render_template("unavailable.html"), 503

    for dependency_down in (
        IdentityServiceUnavailable,
        OperationalError,
        InterfaceError,
        SQLAlchemyTimeoutError,
        limits.STORAGE_ERROR,
    ):
        app.register_error_handler(dependency_down, unavailable)

    @app.errorhandler(500)
    def internal_error(exc: Exception) -> ResponseReturnValue:
        # The original exception's type only: its message may quote the student's input.
        original = getattr(exc, "original_exception", None) or exc
        log.error("unhandled error", extra={"reason": type(original).__name__})
        return render_template(
            "error.html", message=_("Nothing has been changed. Please try again in a few minutes.")
        ), 500

    @app.errorhandler(404)
    def not_found(_exc: Exception) -> ResponseReturnValue:
        # Our own page, in the student's language, not the framework's bare English one.
        return render_template("not_found.html"), 404

    @app.errorhandler(413)
    def too_large(_exc: Exception) -> ResponseReturnValue:
        return render_template("error.html", message=_("That request was too large.")), 413

    return app


def _install_oidc_provider(app: Flask, svc: Services) -> None:
    issuer = svc.settings.base_url + "/oidc"
    server, resource = make_server(app, svc, issuer)
    app.extensions["umpass.oidc_server"] = server
    app.extensions["umpass.oidc_resource"] = resource
    app.extensions["umpass.oidc_issuer"] = issuer
    load_signing_key(svc.settings.oidc.signing_key_file)  # created now, not mid-login
    app.register_blueprint(oidc_views.bp)
    flow_glue.install(app)
