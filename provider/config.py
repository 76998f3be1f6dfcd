"""Service configuration, read once from environment variables.

Every variable is documented in `.env.example`. A missing or malformed value raises
`ConfigError` with one sentence that says which variable to fix.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from provider.secret_strength import refusal


class ConfigError(Exception):
    """The service cannot start with the configuration it was given."""


@dataclass(frozen=True)
class KeycloakSettings:
    url: str
    realm: str
    client_id: str
    client_secret: str = field(repr=False)
    timeout_seconds: float = 10.0
    pool_size: int = 4


@dataclass(frozen=True)
class DeliverySettings:
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_security: str = "none"
    smtp_username: str = ""
    smtp_password: str = field(default="", repr=False)
    mail_from: str = "UMPASS <no-reply@localhost>"
    sms_gateway: str = "outbox"
    sms_outbox: str = "var/sms-outbox.jsonl"
    sms_webhook_url: str = ""
    sms_webhook_auth: str = field(default="", repr=False)
    sms_webhook_body: str = '{"to": "$to", "text": "$text"}'
    phone_country_codes: tuple[int, ...] = (853, 852, 86, 886, 351)


@dataclass(frozen=True)
class OidcSettings:
    """The service as the realm's activation identity provider; off without a secret."""

    broker_client_id: str = "keycloak-broker"
    broker_client_secret: str = field(default="", repr=False)
    broker_redirect_uri: str = ""
    signing_key_file: str = "var/oidc-signing-key.pem"

    @property
    def enabled(self) -> bool:
        return bool(self.broker_client_secret)

    @property
    def keycloak_realm_url(self) -> str:
        """The realm as browsers reach it (its issuer): where the broker's redirect URI
        points, without `/broker/<alias>/endpoint`."""
        return self.broker_redirect_uri.rsplit("/broker/", 1)[0]


@dataclass(frozen=True)
class RealmHealthSettings:
    """What the web service needs of the realm-health check (provider/realm_health): only
    how old a stored result may be. It never reads the realm and never holds the monitor
    account's secret: `umpass realm-check` (provider/realm_health/monitor.py) does."""

    # UMPASS_REALM_HEALTH_STALE_AFTER (minutes): a stored result older than this is shown
    # red as "not checked since" (the documented timer runs every 5 minutes).
    stale_after_minutes: float = 20.0


@dataclass(frozen=True)
class Settings:
    keycloak: KeycloakSettings
    database_url: str
    secret_key: str = field(repr=False)
    hmac_key: bytes = field(repr=False)
    base_url: str
    log_level: str = "INFO"
    log_format: str = "json"
    testing: bool = False
    user_id_length: int = 7
    flow_idle_minutes: float = 30
    after_activation_url: str = ""
    ratelimit_storage: str = "memory://"
    identify_limit: str = "10 per minute;100 per hour"
    trusted_proxies: int = 0
    send_limit: str = "20 per hour"
    # Code sends per student across all their flows (windows of at most a day).
    student_send_limit: str = "6 per hour;10 per day"
    # Text messages the whole service sends per UTC day; 0 sends no code by text.
    sms_daily_budget: int = 2000
    sign_in_limit: str = "300 per minute"
    strength_limit: str = "60 per minute"
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    oidc: OidcSettings = field(default_factory=OidcSettings)
    helpdesk_client_id: str = "umpass-helpdesk"
    helpdesk_client_secret: str = field(default="", repr=False)  # empty: console off
    metrics_token: str = field(default="", repr=False)  # empty: /metrics off
    # More user IDs than this locked within an hour: the console shows a mass lockout.
    mass_lockout_threshold: int = 20
    # After this many locks in a row of one typed user ID, its identify attempts need a
    # solved proof-of-work challenge until `challenge_window_minutes` after the lock ends
    # (0: never).
    challenge_after_locks: int = 2
    challenge_window_minutes: float = 60
    # The challenge's work: a counter the browser searches for, at most this large.
    challenge_max_number: int = 20000
    # Recovery codes asked for one typed account (user ID or email), whatever channel,
    # and for one typed account on one channel: answered 429 alike whether or not the
    # account exists.
    recovery_account_limit: str = "5 per hour;10 per day"
    recovery_contact_limit: str = "1 per minute;4 per hour"
    # Recovery asks the date of birth too, after the code (a second proof).
    recovery_asks_birth_date: bool = False
    # UMPASS_ENV=development: the developer pages (/dev/mail) and relaxable limits.
    development: bool = False
    # Development only: the request limits above not set explicitly are RELAXED_LIMIT.
    relaxed_limits: bool = False
    dev_mail_dir: str = "var/mail"
    # Contacts kept from the Registry must be proven by a code too (off: only a new or
    # changed contact needs one, as the FAQ says; a kept one stays unverified unless proven).
    require_proof_of_kept_contacts: bool = False
    # The university's clock (IANA name): the help desk reads times on it, as students do.
    time_zone: str = "Asia/Macau"
    realm_health: RealmHealthSettings = field(default_factory=RealmHealthSettings)


# UMPASS_DEV_RELAXED_LIMITS: a developer walking the flow again and again from 127.0.0.1.
RELAXED_LIMIT = "1000 per minute"
RELAXABLE_LIMITS = (
    "UMPASS_IDENTIFY_LIMIT",
    "UMPASS_SEND_LIMIT",
    "UMPASS_SIGN_IN_LIMIT",
    "UMPASS_STRENGTH_LIMIT",
    "UMPASS_RECOVERY_ACCOUNT_LIMIT",
    "UMPASS_RECOVERY_CONTACT_LIMIT",
)


def _switch(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _require(env: Mapping[str, str], name: str, hint: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is not set: {hint}")
    return value


def _http_url(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, default).strip().rstrip("/")
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{name}={value!r} is not an http(s) URL, e.g. http://127.0.0.1:18080")
    return value


def number_setting(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    """The number `name` in `env` (`default` when unset), at least `minimum`."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum:g}")
    return value


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from `env` (default: the process environment)."""
    env = os.environ if env is None else env
    keycloak = KeycloakSettings(
        url=_http_url(env, "UMPASS_KEYCLOAK_URL", "http://127.0.0.1:18080"),
        realm=env.get("UMPASS_REALM", "umpass").strip() or "umpass",
        client_id=env.get("UMPASS_KC_CLIENT_ID", "umpass-activation").strip(),
        client_secret=_require(
            env,
            "UMPASS_KC_CLIENT_SECRET",
            "set it to the secret of the service's Keycloak client "
            "(scripts/dev writes one into .env)",
        ),
        timeout_seconds=number_setting(env, "UMPASS_KC_TIMEOUT", 10.0, minimum=0.5),
        pool_size=int(number_setting(env, "UMPASS_KC_POOL_SIZE", 4, minimum=1)),
    )
    testing = env.get("UMPASS_TESTING", "") == "1"
    environment = env.get("UMPASS_ENV", "production").strip().lower() or "production"
    if environment not in ("production", "development"):
        raise ConfigError(f"UMPASS_ENV={environment!r} must be 'production' or 'development'")
    secret_key = env.get("UMPASS_SECRET_KEY", "").strip()
    if not secret_key:
        if not testing and environment == "production":
            raise ConfigError(
                "UMPASS_SECRET_KEY is not set: production needs a fixed random key "
                "(or set UMPASS_ENV=development on a developer machine)"
            )
        # Development only: sessions do not survive a restart, which is harmless there.
        secret_key = secrets.token_urlsafe(32)
    hmac_key = env.get("UMPASS_HMAC_KEY", "").strip()
    if not hmac_key:
        if not testing and environment == "production":
            raise ConfigError(
                "UMPASS_HMAC_KEY is not set: production needs a fixed random key of 32+ characters"
                " (codes and proofing data are stored as HMACs under it)"
            )
        # Development only: hashes made under a random key die with the process.
        hmac_key = secrets.token_urlsafe(32)
    if len(hmac_key) < 32:
        raise ConfigError("UMPASS_HMAC_KEY must be at least 32 characters of random text")
    log_level = env.get("UMPASS_LOG_LEVEL", "INFO").strip().upper() or "INFO"
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"UMPASS_LOG_LEVEL={log_level!r} must be DEBUG, INFO, WARNING or ERROR")
    log_format = env.get("UMPASS_LOG_FORMAT", "json").strip().lower()
    if log_format not in ("json", "text"):
        raise ConfigError(f"UMPASS_LOG_FORMAT={log_format!r} must be 'json' or 'text'")
    delivery = _delivery(env)
    if delivery.sms_gateway == "outbox" and environment == "production" and not testing:
        raise ConfigError(
            "UMPASS_SMS_GATEWAY=outbox writes codes to a file: production needs "
            "UMPASS_SMS_GATEWAY=webhook (or UMPASS_ENV=development on a developer machine)"
        )
    if environment == "production" and not testing:
        _refuse_weak_secrets(env, {"UMPASS_SECRET_KEY": secret_key, "UMPASS_HMAC_KEY": hmac_key})
        _refuse_plain_transport(delivery)
    relaxed = _relaxed_limits(env, development=environment == "development")
    if relaxed:
        env = {name: RELAXED_LIMIT for name in RELAXABLE_LIMITS} | {
            name: value for name, value in env.items() if value.strip()
        }
    base_url = _http_url(env, "UMPASS_BASE_URL", "http://127.0.0.1:5000")
    if environment == "production" and not testing and not _https_or_loopback(base_url):
        raise ConfigError(
            f"UMPASS_BASE_URL={base_url!r} must start with https:// in production: it is the "
            "address students' browsers use (set UMPASS_ENV=development on a developer machine)"
        )
    return Settings(
        keycloak=keycloak,
        database_url=env.get("DATABASE_URL", "").strip() or "sqlite:///var/umpass.db",
        secret_key=secret_key,
        hmac_key=hmac_key.encode(),
        base_url=base_url,
        log_level=log_level,
        user_id_length=int(number_setting(env, "UMPASS_USER_ID_LENGTH", 7, minimum=3)),
        flow_idle_minutes=number_setting(env, "UMPASS_FLOW_IDLE_MINUTES", 30, minimum=1),
        after_activation_url=_http_url(
            env,
            "UMPASS_AFTER_ACTIVATION_URL",
            f"{keycloak.url}/realms/{keycloak.realm}/account",
        ),
        ratelimit_storage=_ratelimit_storage(env, production=environment == "production"),
        identify_limit=_limit(env, "UMPASS_IDENTIFY_LIMIT", "10 per minute;100 per hour"),
        trusted_proxies=int(number_setting(env, "UMPASS_TRUSTED_PROXIES", 0, minimum=0)),
        delivery=delivery,
        send_limit=_limit(env, "UMPASS_SEND_LIMIT", "20 per hour"),
        student_send_limit=_student_send_limit(env),
        sms_daily_budget=int(number_setting(env, "UMPASS_SMS_DAILY_BUDGET", 2000, minimum=0)),
        sign_in_limit=_limit(env, "UMPASS_SIGN_IN_LIMIT", "300 per minute"),
        strength_limit=_limit(env, "UMPASS_STRENGTH_LIMIT", "60 per minute"),
        log_format=log_format,
        testing=testing,
        oidc=_oidc(env, keycloak),
        helpdesk_client_id=env.get("UMPASS_HELPDESK_CLIENT_ID", "").strip() or "umpass-helpdesk",
        helpdesk_client_secret=env.get("UMPASS_HELPDESK_CLIENT_SECRET", "").strip(),
        metrics_token=_metrics_token(env),
        mass_lockout_threshold=int(
            number_setting(env, "UMPASS_MASS_LOCKOUT_THRESHOLD", 20, minimum=1)
        ),
        challenge_after_locks=int(
            number_setting(env, "UMPASS_CHALLENGE_AFTER_LOCKS", 2, minimum=0)
        ),
        challenge_window_minutes=number_setting(
            env, "UMPASS_CHALLENGE_WINDOW_MINUTES", 60, minimum=1
        ),
        challenge_max_number=int(
            number_setting(env, "UMPASS_CHALLENGE_MAX_NUMBER", 20000, minimum=100)
        ),
        recovery_account_limit=_limit(
            env, "UMPASS_RECOVERY_ACCOUNT_LIMIT", "5 per hour;10 per day"
        ),
        recovery_contact_limit=_limit(
            env, "UMPASS_RECOVERY_CONTACT_LIMIT", "1 per minute;4 per hour"
        ),
        recovery_asks_birth_date=_switch(env, "UMPASS_RECOVERY_ASKS_BIRTH_DATE"),
        development=environment == "development",
        relaxed_limits=relaxed,
        dev_mail_dir=env.get("UMPASS_DEV_MAIL_DIR", "").strip() or "var/mail",
        require_proof_of_kept_contacts=_switch(env, "UMPASS_REQUIRE_PROOF_OF_KEPT_CONTACTS"),
        time_zone=_time_zone(env),
        realm_health=_realm_health(env),
    )


def _realm_health(env: Mapping[str, str]) -> RealmHealthSettings:
    return RealmHealthSettings(
        stale_after_minutes=number_setting(env, "UMPASS_REALM_HEALTH_STALE_AFTER", 20, minimum=1),
    )


def _relaxed_limits(env: Mapping[str, str], *, development: bool) -> bool:
    """UMPASS_DEV_RELAXED_LIMITS: refused outside development, whatever else is set, so
    that a copied development .env cannot take a production service's limits away."""
    raw = env.get("UMPASS_DEV_RELAXED_LIMITS", "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw not in ("1", "true", "yes", "on"):
        raise ConfigError(f"UMPASS_DEV_RELAXED_LIMITS={raw!r} must be true or false")
    if not development:
        raise ConfigError(
            "UMPASS_DEV_RELAXED_LIMITS is for a developer machine only (UMPASS_ENV=development): "
            "remove it; production keeps every request limit"
        )
    return True


def _time_zone(env: Mapping[str, str]) -> str:
    name = env.get("UMPASS_TIME_ZONE", "").strip() or "Asia/Macau"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"UMPASS_TIME_ZONE={name!r} is not a time zone: use an IANA name, e.g. Asia/Macau"
        ) from None
    return name


# Secrets checked in production, besides the two keys above (each only when set).
PRODUCTION_SECRETS = (
    "UMPASS_KC_CLIENT_SECRET",
    "UMPASS_BROKER_CLIENT_SECRET",
    "UMPASS_HELPDESK_CLIENT_SECRET",
    "UMPASS_METRICS_TOKEN",
)


def _refuse_weak_secrets(env: Mapping[str, str], keys: Mapping[str, str]) -> None:
    given = {name: env.get(name, "").strip() for name in PRODUCTION_SECRETS}
    for name, value in {**keys, **given}.items():
        message = refusal(name, value) if value else None
        if message:
            raise ConfigError(message)


def _refuse_plain_transport(delivery: DeliverySettings) -> None:
    """Codes travel to the SMS provider and the mail server: over TLS unless on this host."""
    if delivery.sms_gateway == "webhook" and not delivery.sms_webhook_url.startswith("https://"):
        raise ConfigError(
            "UMPASS_SMS_WEBHOOK_URL must start with https:// in production: the codes and the "
            "gateway's credential travel in it"
        )
    if delivery.smtp_security == "none" and not _is_loopback(delivery.smtp_host):
        raise ConfigError(
            f"UMPASS_SMTP_SECURITY=none sends codes in the clear to {delivery.smtp_host}: "
            "production needs starttls or tls for a mail server that is not on this host"
        )


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "127.0.0.1", "::1") or host.startswith("127.")


def _https_or_loopback(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme == "https" or _is_loopback(parsed.hostname or "")


def _limit(env: Mapping[str, str], name: str, default: str) -> str:
    """A Flask-Limiter rate string such as "10 per minute;100 per hour"."""
    from limits import parse_many

    value = env.get(name, "").strip() or default
    try:
        parse_many(value)
    except ValueError:
        raise ConfigError(
            f"{name}={value!r} is not a rate limit, e.g. '10 per minute;100 per hour'"
        ) from None
    return value


# The send rows a per-student window counts are purged after a day (see provider/purge.py).
LONGEST_STUDENT_WINDOW_SECONDS = 24 * 60 * 60


def _student_send_limit(env: Mapping[str, str]) -> str:
    """Like the other limits, but counted in the database per student: each window at
    most a day (what `umpass purge` keeps of the sends) and at least one send."""
    from limits import parse_many

    name = "UMPASS_STUDENT_SEND_LIMIT"
    value = _limit(env, name, "6 per hour;10 per day")
    for item in parse_many(value):
        if item.get_expiry() > LONGEST_STUDENT_WINDOW_SECONDS:
            raise ConfigError(f"{name}={value!r}: each window must be at most a day")
        if item.amount < 1:
            raise ConfigError(f"{name}={value!r}: each window must allow at least 1 send")
    return value


def _ratelimit_storage(env: Mapping[str, str], *, production: bool) -> str:
    """Where every per-address limit is counted: one budget across replicas needs Redis."""
    value = env.get("UMPASS_RATELIMIT_STORAGE", "").strip()
    if not value:
        if production and env.get("UMPASS_TESTING", "") != "1":
            raise ConfigError(
                "UMPASS_RATELIMIT_STORAGE is not set: production needs a shared store such as "
                "redis://redis.internal:6379/0 so that limits hold across replicas "
                "(memory:// only for a single process)"
            )
        return "memory://"
    scheme = urlparse(value).scheme
    if scheme not in ("memory", "redis", "rediss", "redis+sentinel", "redis+cluster"):
        raise ConfigError(
            "UMPASS_RATELIMIT_STORAGE must be a redis:// (or rediss://) URL or memory://"
            + (f", not {scheme}://…" if scheme else "")
        )
    return value


def _metrics_token(env: Mapping[str, str]) -> str:
    token = env.get("UMPASS_METRICS_TOKEN", "").strip()
    if token and len(token) < 24:
        raise ConfigError("UMPASS_METRICS_TOKEN must be at least 24 characters of random text")
    return token


def _oidc(env: Mapping[str, str], keycloak: KeycloakSettings) -> OidcSettings:
    secret = env.get("UMPASS_BROKER_CLIENT_SECRET", "").strip()
    if secret and len(secret) < 24:
        raise ConfigError("UMPASS_BROKER_CLIENT_SECRET must be at least 24 characters")
    alias = env.get("UMPASS_BROKER_ALIAS", "").strip() or "umpass-activation"
    default_redirect = f"{keycloak.url}/realms/{keycloak.realm}/broker/{alias}/endpoint"
    return OidcSettings(
        broker_client_id=env.get("UMPASS_BROKER_CLIENT_ID", "").strip() or "keycloak-broker",
        broker_client_secret=secret,
        # Exactly the URI Keycloak sends; set it when browsers reach Keycloak by
        # another name than UMPASS_KEYCLOAK_URL.
        broker_redirect_uri=_http_url(env, "UMPASS_BROKER_REDIRECT_URI", default_redirect),
        signing_key_file=env.get("UMPASS_OIDC_KEY_FILE", "").strip() or "var/oidc-signing-key.pem",
    )


def _delivery(env: Mapping[str, str]) -> DeliverySettings:
    security = env.get("UMPASS_SMTP_SECURITY", "none").strip().lower() or "none"
    if security not in ("none", "starttls", "tls"):
        raise ConfigError(f"UMPASS_SMTP_SECURITY={security!r} must be none, starttls or tls")
    gateway = env.get("UMPASS_SMS_GATEWAY", "outbox").strip().lower() or "outbox"
    if gateway not in ("outbox", "webhook"):
        raise ConfigError(f"UMPASS_SMS_GATEWAY={gateway!r} must be outbox or webhook")
    webhook_url = env.get("UMPASS_SMS_WEBHOOK_URL", "").strip()
    if gateway == "webhook":
        webhook_url = _http_url(env, "UMPASS_SMS_WEBHOOK_URL", "")
    raw_codes = env.get("UMPASS_PHONE_COUNTRIES", "").strip()
    try:
        codes = (
            tuple(int(c) for c in raw_codes.replace(" ", "").split(",") if c)
            if raw_codes
            else (853, 852, 86, 886, 351)
        )
    except ValueError:
        raise ConfigError(
            f"UMPASS_PHONE_COUNTRIES={raw_codes!r} must be country calling codes, e.g. 853,852"
        ) from None
    return DeliverySettings(
        smtp_host=env.get("UMPASS_SMTP_HOST", "127.0.0.1").strip() or "127.0.0.1",
        smtp_port=int(number_setting(env, "UMPASS_SMTP_PORT", 25, minimum=1)),
        smtp_security=security,
        smtp_username=env.get("UMPASS_SMTP_USER", "").strip(),
        smtp_password=env.get("UMPASS_SMTP_PASSWORD", ""),
        mail_from=env.get("UMPASS_MAIL_FROM", "").strip() or "UMPASS <no-reply@localhost>",
        sms_gateway=gateway,
        sms_outbox=env.get("UMPASS_SMS_OUTBOX", "").strip() or "var/sms-outbox.jsonl",
        sms_webhook_url=webhook_url,
        sms_webhook_auth=env.get("UMPASS_SMS_WEBHOOK_AUTH", ""),
        sms_webhook_body=env.get("UMPASS_SMS_WEBHOOK_BODY", "").strip()
        or '{"to": "$to", "text": "$text"}',
        phone_country_codes=codes,
    )
