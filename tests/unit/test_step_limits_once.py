"""A step's per-address limit is spent once per request, however many times the flow's
routes were built in the process (recovery's are built per app; the tests build several
apps in one process)."""

from __future__ import annotations

import dataclasses

from provider import create_app
from provider.config import Settings
from tests.support.recovery import RecoveryClient


def test_a_second_app_does_not_make_a_request_spend_the_limit_twice(
    offline_settings: Settings,
) -> None:
    settings = dataclasses.replace(offline_settings, identify_limit="2 per 11 minutes")
    create_app(settings)
    browser = RecoveryClient(create_app(settings))
    # Forms without an account (refused as such, 400): each still spends the start's limit.
    answers = [browser.post("start", {"channel": "email"}).status_code for _ in range(3)]
    assert answers == [400, 400, 429]
