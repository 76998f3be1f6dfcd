"""The Standard Webhooks signature and the endpoint settings."""

from __future__ import annotations

import base64
import json

import pytest

from provider.config import ConfigError
from provider.events import endpoints, signing

# The example of the Standard Webhooks specification (its reference test vector).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_signature_matches_the_specifications_example() -> None:
    assert signing.sign(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE


def test_verify_takes_a_good_signature_among_several_and_refuses_the_rest() -> None:
    header = "v1,bm90LWl0 " + SPEC_SIGNATURE
    signing.verify(SPEC_SECRET, SPEC_ID, str(SPEC_TS), header, SPEC_BODY, now=SPEC_TS + 10)
    with pytest.raises(signing.BadSignature):
        signing.verify(SPEC_SECRET, SPEC_ID, str(SPEC_TS), header, b"{}", now=SPEC_TS)
    with pytest.raises(signing.BadSignature):  # a replay after five minutes
        signing.verify(SPEC_SECRET, SPEC_ID, str(SPEC_TS), header, SPEC_BODY, now=SPEC_TS + 301)
    with pytest.raises(signing.BadSignature):  # from the future
        signing.verify(SPEC_SECRET, SPEC_ID, str(SPEC_TS), header, SPEC_BODY, now=SPEC_TS - 301)


def _env(url: str, **extra: str) -> dict[str, str]:
    secret = "whsec_" + base64.b64encode(b"s" * 32).decode()
    return {
        "UMPASS_WEBHOOK_ENDPOINTS": json.dumps([{"name": "lms", "url": url, "secret": secret}]),
        **extra,
    }


def test_endpoints_must_be_https_or_loopback_http_in_development() -> None:
    assert endpoints.load(_env("https://lms.example.edu/hooks")).endpoints[0].name == "lms"
    dev = endpoints.load(_env("http://127.0.0.1:9000/h", UMPASS_ENV="development"))
    assert dev.endpoints[0].url == "http://127.0.0.1:9000/h"
    for refused in (
        _env("http://127.0.0.1:9000/h"),  # production
        _env("http://lms.example.edu/h", UMPASS_ENV="development"),  # not loopback
    ):
        with pytest.raises(ConfigError):
            endpoints.load(refused)


def test_a_secret_that_is_not_whsec_base64_is_refused() -> None:
    raw = [{"name": "lms", "url": "https://lms.example.edu/", "secret": "plain"}]
    with pytest.raises(ConfigError):
        endpoints.load({"UMPASS_WEBHOOK_ENDPOINTS": json.dumps(raw)})
