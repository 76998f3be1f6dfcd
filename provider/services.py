"""The long-lived objects a running service shares, assembled in one place."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from provider.config import Settings
from provider.delivery import Mailer, SmsGateway
from provider.delivery.sms import OutboxGateway, WebhookGateway, WebhookSettings
from provider.delivery.smtp import SmtpMailer, SmtpSettings
from provider.keycloak import KeycloakGateway
from provider.keyed_hash import KeyedHasher
from provider.storage.engine import make_engine, read_only

_EXTENSION_KEY = "umpass"


@dataclass
class Services:
    settings: Settings
    keycloak: KeycloakGateway
    engine: Engine
    sessions: sessionmaker[Session]  # for writes (and reads that lead to writes)
    reads: sessionmaker[Session]  # for transactions that only read
    hasher: KeyedHasher
    mailer: Mailer
    sms: SmsGateway

    @classmethod
    def assemble(cls, settings: Settings, *, gateway: KeycloakGateway | None = None) -> Services:
        engine = make_engine(settings.database_url)
        d = settings.delivery
        return cls(
            settings=settings,
            keycloak=gateway or KeycloakGateway(settings.keycloak),
            engine=engine,
            sessions=sessionmaker(engine, expire_on_commit=False),
            reads=sessionmaker(read_only(engine), expire_on_commit=False),
            hasher=KeyedHasher(settings.hmac_key),
            mailer=SmtpMailer(smtp_settings(settings)),
            sms=(
                WebhookGateway(
                    WebhookSettings(d.sms_webhook_url, d.sms_webhook_auth, d.sms_webhook_body)
                )
                if d.sms_gateway == "webhook"
                else OutboxGateway(d.sms_outbox)
            ),
        )


def smtp_settings(settings: Settings) -> SmtpSettings:
    """The service's one SMTP delivery (codes, notices, the realm-health alert)."""
    d = settings.delivery
    return SmtpSettings(
        host=d.smtp_host,
        port=d.smtp_port,
        security=d.smtp_security,
        username=d.smtp_username,
        password=d.smtp_password,
        sender=d.mail_from,
    )


def install(app: Flask, svc: Services) -> None:
    app.extensions[_EXTENSION_KEY] = svc


def services(app: Flask) -> Services:
    return app.extensions[_EXTENSION_KEY]
