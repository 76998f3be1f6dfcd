import pytest

from provider.config import ConfigError, load_settings

BASE = {"UMPASS_KC_CLIENT_SECRET": "very-secret-value", "UMPASS_ENV": "development"}


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
    ],
)
def test_bad_configuration_says_what_to_fix(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings(env)


def test_secret_key_kept_when_given() -> None:
    assert load_settings({**BASE, "UMPASS_SECRET_KEY": "k" * 32}).secret_key == "k" * 32
