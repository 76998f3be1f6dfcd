from pathlib import Path

import pytest

from provider.config import RELAXED_LIMIT, ConfigError, load_settings

BASE = {"UMPASS_KC_CLIENT_SECRET": "very-secret-value", "UMPASS_ENV": "development"}
# Fixed stand-ins for secrets.token_urlsafe(32): long and varied enough for production.
STRONG = "Qh7vN2pX9kLmR4tW8yZc3bF6gJ1dS5aE"
PRODUCTION = {
    "UMPASS_KC_CLIENT_SECRET": STRONG + "kc",
    "UMPASS_SECRET_KEY": STRONG + "sk",
    "UMPASS_HMAC_KEY": STRONG + "hm",
    "UMPASS_SMS_GATEWAY": "webhook",
    "UMPASS_SMS_WEBHOOK_URL": "https://sms.example.com/send",
    "UMPASS_BASE_URL": "https://activate.example.edu",
    "UMPASS_RATELIMIT_STORAGE": "redis://redis.internal:6379/0",
}


def test_defaults() -> None:
    settings = load_settings(BASE)
    assert settings.keycloak.url == "http://127.0.0.1:18080"
    assert settings.keycloak.realm == "umpass"
    assert settings.keycloak.client_id == "umpass-activation"
    assert settings.database_url == "sqlite:///var/umpass.db"
    assert "very-secret-value" not in repr(settings)
    assert settings.secret_key not in repr(settings)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "UMPASS_KC_CLIENT_SECRET is not set"),
        ({**BASE, "UMPASS_KEYCLOAK_URL": "ftp://x"}, "is not an http(s) URL"),
        ({**BASE, "UMPASS_KC_TIMEOUT": "soon"}, "UMPASS_KC_TIMEOUT='soon' is not a number"),
        ({**BASE, "UMPASS_KC_POOL_SIZE": "0"}, "UMPASS_KC_POOL_SIZE must be at least 1"),
        ({**BASE, "UMPASS_LOG_FORMAT": "xml"}, "must be 'json' or 'text'"),
        ({**BASE, "UMPASS_ENV": "production"}, "UMPASS_SECRET_KEY is not set"),
        ({"UMPASS_KC_CLIENT_SECRET": "x"}, "UMPASS_SECRET_KEY is not set"),  # production default
        ({**BASE, "UMPASS_ENV": "staging"}, "must be 'production' or 'development'"),
        ({**BASE, "UMPASS_LOG_LEVEL": "chatty"}, "UMPASS_LOG_LEVEL='CHATTY' must be"),
        ({**PRODUCTION, "UMPASS_BASE_URL": "http://activate.example.edu"}, "must start with https"),
        ({**PRODUCTION, "UMPASS_RATELIMIT_STORAGE": ""}, "UMPASS_RATELIMIT_STORAGE is not set"),
        ({**BASE, "UMPASS_RATELIMIT_STORAGE": "memcached://x"}, "must be a redis://"),
        ({**BASE, "UMPASS_SIGN_IN_LIMIT": "lots"}, "UMPASS_SIGN_IN_LIMIT='lots' is not a rate"),
        ({**BASE, "UMPASS_IDENTIFY_LIMIT": "10 per fortnight"}, "is not a rate limit"),
        ({**BASE, "UMPASS_STUDENT_SEND_LIMIT": "lots"}, "is not a rate limit"),
        ({**BASE, "UMPASS_STUDENT_SEND_LIMIT": "20 per 2 days"}, "must be at most a day"),
        ({**BASE, "UMPASS_STUDENT_SEND_LIMIT": "0 per hour"}, "must allow at least 1 send"),
        ({**BASE, "UMPASS_SMS_DAILY_BUDGET": "-1"}, "UMPASS_SMS_DAILY_BUDGET must be at least 0"),
        ({**BASE, "UMPASS_SMS_DAILY_BUDGET": "many"}, "UMPASS_SMS_DAILY_BUDGET='many' is not"),
        ({**BASE, "UMPASS_MASS_LOCKOUT_THRESHOLD": "0"}, "THRESHOLD must be at least 1"),
        ({**BASE, "UMPASS_CHALLENGE_AFTER_LOCKS": "two"}, "AFTER_LOCKS='two' is not a number"),
        ({**BASE, "UMPASS_CHALLENGE_MAX_NUMBER": "10"}, "MAX_NUMBER must be at least 100"),
        ({**BASE, "UMPASS_TIME_ZONE": "Macau"}, "UMPASS_TIME_ZONE='Macau' is not a time zone"),
        (
            {**PRODUCTION, "UMPASS_SMS_WEBHOOK_URL": "http://sms.example.com/send"},
            "UMPASS_SMS_WEBHOOK_URL must start with https:// in production",
        ),
        (
            {**PRODUCTION, "UMPASS_SMTP_HOST": "mail.example.edu"},
            "UMPASS_SMTP_SECURITY=none sends codes in the clear to mail.example.edu",
        ),
    ],
)
def test_bad_configuration_says_what_to_fix(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings(env)


def test_lockout_visibility_and_challenge_defaults() -> None:
    settings = load_settings(BASE)
    assert settings.mass_lockout_threshold == 20
    assert settings.challenge_after_locks == 2
    assert settings.challenge_window_minutes == 60
    assert settings.challenge_max_number == 20000
    off = load_settings({**BASE, "UMPASS_CHALLENGE_AFTER_LOCKS": "0"})
    assert off.challenge_after_locks == 0


def test_secret_key_kept_when_given() -> None:
    assert load_settings({**BASE, "UMPASS_SECRET_KEY": "k" * 32}).secret_key == "k" * 32


def test_production_settings_with_every_limit_documented() -> None:
    settings = load_settings(PRODUCTION)
    assert settings.ratelimit_storage == "redis://redis.internal:6379/0"
    assert settings.sign_in_limit == "300 per minute"
    assert settings.identify_limit == "10 per minute;100 per hour"
    assert settings.send_limit == "20 per hour"
    assert settings.strength_limit == "60 per minute"
    assert settings.student_send_limit == "6 per hour;10 per day"
    assert settings.sms_daily_budget == 2000
    tuned = load_settings(
        {
            **PRODUCTION,
            "UMPASS_SIGN_IN_LIMIT": "1000 per minute",
            "UMPASS_STUDENT_SEND_LIMIT": "3 per 10 minutes;8 per 24 hours",
            "UMPASS_SMS_DAILY_BUDGET": "0",
        }
    )
    assert tuned.sign_in_limit == "1000 per minute"
    assert tuned.student_send_limit == "3 per 10 minutes;8 per 24 hours"
    assert tuned.sms_daily_budget == 0  # texts off


def _example_values() -> dict[str, str]:
    """Every NAME=value of .env.example, commented-out ones included."""
    values = {}
    for line in Path(".env.example").read_text(encoding="utf-8").splitlines():
        name, _, value = line.lstrip("#").partition("=")
        if name.strip().isupper() and value:
            values[name.strip()] = value.strip()
    return values


@pytest.mark.parametrize(
    "name",
    [
        "UMPASS_SECRET_KEY",
        "UMPASS_HMAC_KEY",
        "UMPASS_KC_CLIENT_SECRET",
        "UMPASS_BROKER_CLIENT_SECRET",
        "UMPASS_HELPDESK_CLIENT_SECRET",
        "UMPASS_METRICS_TOKEN",
    ],
)
def test_placeholders_from_env_example_are_refused_in_production(name: str) -> None:
    placeholder = _example_values()[name]
    with pytest.raises(ConfigError) as refused:
        load_settings({**PRODUCTION, name: placeholder})
    message = str(refused.value)
    assert message.startswith(f"{name} ") and "\n" not in message
    assert placeholder not in message  # the value itself is never echoed


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("Qh7vN2pX9kLmR4tW8yZc3bF6gJ1", "shorter than 32 characters"),
        ("ab" * 20, "not random"),
        ("my-example-secret-" + STRONG, "placeholder"),
    ],
)
def test_weak_secrets_are_refused_in_production(value: str, why: str) -> None:
    with pytest.raises(ConfigError, match=f"UMPASS_SECRET_KEY .*{why}"):
        load_settings({**PRODUCTION, "UMPASS_SECRET_KEY": value})


def test_development_keeps_working_with_the_example_values() -> None:
    example = _example_values()
    settings = load_settings(
        {
            **BASE,
            "UMPASS_SECRET_KEY": example["UMPASS_SECRET_KEY"],
            "UMPASS_BROKER_CLIENT_SECRET": example["UMPASS_BROKER_CLIENT_SECRET"],
        }
    )
    assert settings.secret_key == example["UMPASS_SECRET_KEY"]


def test_mail_over_tls_or_on_this_host_is_accepted_in_production() -> None:
    tls = load_settings(
        {**PRODUCTION, "UMPASS_SMTP_HOST": "mail.example.edu", "UMPASS_SMTP_SECURITY": "starttls"}
    )
    assert tls.delivery.smtp_security == "starttls"
    assert (
        load_settings({**PRODUCTION, "UMPASS_SMTP_HOST": "127.0.0.1"}).delivery.smtp_host
        == "127.0.0.1"
    )


def test_development_relaxes_the_request_limits_not_set_explicitly() -> None:
    relaxed = load_settings(
        {**BASE, "UMPASS_DEV_RELAXED_LIMITS": "true", "UMPASS_SEND_LIMIT": "5 per hour"}
    )
    assert relaxed.relaxed_limits and relaxed.development
    assert relaxed.identify_limit == RELAXED_LIMIT
    assert relaxed.sign_in_limit == relaxed.strength_limit == RELAXED_LIMIT
    assert relaxed.recovery_account_limit == relaxed.recovery_contact_limit == RELAXED_LIMIT
    assert relaxed.send_limit == "5 per hour"  # set explicitly: kept
    # What is never relaxed: per student, not per address (and the identify lockout).
    assert relaxed.student_send_limit == load_settings(BASE).student_send_limit
    assert load_settings(BASE).identify_limit == "10 per minute;100 per hour"


@pytest.mark.parametrize("value", ["true", "1", "yes"])
def test_production_refuses_relaxed_limits(value: str) -> None:
    with pytest.raises(ConfigError, match="UMPASS_DEV_RELAXED_LIMITS is for a developer"):
        load_settings({**PRODUCTION, "UMPASS_DEV_RELAXED_LIMITS": value})
    with pytest.raises(ConfigError, match="UMPASS_DEV_RELAXED_LIMITS is for a developer"):
        load_settings({**PRODUCTION, "UMPASS_TESTING": "1", "UMPASS_DEV_RELAXED_LIMITS": value})
    production = load_settings({**PRODUCTION, "UMPASS_DEV_RELAXED_LIMITS": "false"})
    assert not production.relaxed_limits and not production.development
    assert production.identify_limit == "10 per minute;100 per hour"


def test_relaxed_limits_must_say_true_or_false() -> None:
    with pytest.raises(ConfigError, match="must be true or false"):
        load_settings({**BASE, "UMPASS_DEV_RELAXED_LIMITS": "very"})
