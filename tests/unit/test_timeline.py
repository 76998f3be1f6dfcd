"""The help desk's timeline in plain words and on the university's clock."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from flask import Flask
from flask_babel import force_locale

from provider import create_app
from provider.config import Settings, load_settings
from provider.helpdesk import timeline

MACAU = ZoneInfo("Asia/Macau")
AT = datetime(2026, 3, 14, 23, 30, tzinfo=UTC)


def _app(offline_settings: Settings) -> Flask:
    return create_app(offline_settings)


def test_times_are_on_the_local_clock_with_the_zone_named(offline_settings: Settings) -> None:
    with _app(offline_settings).test_request_context(), force_locale("en"):
        line = timeline.row(
            AT, "student", "identify.lock_started", {"until": AT.isoformat()}, MACAU
        )
        assert line["at"] == "2026-03-15 07:30:00"  # UTC+8: the next morning in Macau
        assert line["detail"] == "until 2026-03-15 07:30"
        assert timeline.zone_name(MACAU) == "Macao SAR China Time (Asia/Macau)"
        other = timeline.row(AT, "student", "identify.ok", None, ZoneInfo("Europe/Lisbon"))
        assert other["at"] == "2026-03-14 23:30:00"


def test_who_and_what_in_words(offline_settings: Settings) -> None:
    with _app(offline_settings).test_request_context(), force_locale("en"):
        assert timeline.who("student") == "The student"
        assert timeline.who("system") == "The service"
        assert timeline.who("staff:jo") == "Help desk: jo"
        revoked = timeline.row(AT, "staff:jo", "code.revoked", {"count": 1}, MACAU)
        assert (revoked["what"], revoked["detail"]) == ("Activation code revoked", "1 revoked")
        assert timeline.what("some.new_event") == "some.new_event"  # shown, never hidden
    with _app(offline_settings).test_request_context(), force_locale("pt"):
        assert timeline.who("student") == "O estudante"
        assert timeline.state("pending") == "por ativar"


def test_the_zone_is_a_setting() -> None:
    base = {"UMPASS_KC_CLIENT_SECRET": "x", "UMPASS_TESTING": "1"}
    assert load_settings(base).time_zone == "Asia/Macau"
    assert load_settings({**base, "UMPASS_TIME_ZONE": "Europe/Lisbon"}).time_zone == "Europe/Lisbon"
