"""Every message in the code has a full, non-fuzzy translation in every language, with
the same placeholders; and pages really come out in the language asked for."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.frontend import CommandLineInterface
from babel.messages.pofile import read_po
from flask import Flask

from provider import create_app
from provider.config import Settings
from provider.i18n import LANGUAGES, TRANSLATIONS

ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")


@pytest.fixture(scope="module")
def current_ids(tmp_path_factory: pytest.TempPathFactory) -> set:
    pot = tmp_path_factory.mktemp("pot") / "messages.pot"
    CommandLineInterface().run(
        [
            "pybabel",
            "extract",
            "-F",
            str(ROOT / "babel.cfg"),
            "-k",
            "_l",
            "-k",
            "lazy_gettext",
            "-k",
            "ngettext:1,2",
            "--no-location",
            "-o",
            str(pot),
            str(ROOT / "provider"),
        ]
    )
    with pot.open("rb") as f:
        return {m.id for m in read_po(f) if m.id}


@pytest.mark.parametrize("language", [code for code in LANGUAGES if code != "en"])
def test_catalogue_is_complete(language: str, current_ids: set) -> None:
    with (TRANSLATIONS / language / "LC_MESSAGES" / "messages.po").open("rb") as f:
        catalogue = read_po(f)
    translated = {m.id: m for m in catalogue if m.id}
    missing = sorted(str(i) for i in current_ids - set(translated))
    assert missing == [], f"untranslated in {language}: {missing}"
    for message_id, message in translated.items():
        assert not message.fuzzy, message_id
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        assert all(s.strip() for s in strings), f"empty translation: {message_id}"
        source = message_id if isinstance(message_id, str) else message_id[0]
        for text in strings:
            assert set(PLACEHOLDER.findall(text)) == set(PLACEHOLDER.findall(source)), text


@pytest.fixture
def offline_app(offline_settings: Settings) -> Flask:
    return create_app(offline_settings)


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("zh-MO,zh;q=0.9", ["確認您的身份", "第 1 步，共 5 步", 'lang="zh-Hant"']),
        ("zh-TW", ["確認您的身份"]),
        ("pt-PT,pt;q=0.9,en;q=0.5", ["Confirme quem é", "Passo 1 de 5", 'lang="pt"']),
        ("en-GB", ["Confirm who you are", "Step 1 of 5"]),
        ("fr-FR", ["Confirm who you are"]),
    ],
)
def test_pages_follow_accept_language(offline_app: Flask, accept: str, expected: list) -> None:
    body = (
        offline_app.test_client()
        .get("/activate/identify", headers={"Accept-Language": accept})
        .get_data(as_text=True)
    )
    for text in expected:
        assert text in body


def test_the_switcher_choice_wins_and_stays_on_the_page(offline_app: Flask) -> None:
    client = offline_app.test_client()
    response = client.get("/language/pt?next=/activate/identify", headers={"Accept-Language": "zh"})
    assert response.status_code == 302 and response.location == "/activate/identify"
    page = client.get("/activate/identify", headers={"Accept-Language": "zh"})
    assert "Confirme quem é" in page.get_data(as_text=True)
    assert client.get("/language/xx?next=https://evil.example/").location == "/"


@pytest.mark.parametrize(
    "target",
    ["https://evil.example/", "//evil.example/", "/\t/evil.example", "/\n/x", "\\\\evil", "/ok\\x"],
)
def test_language_switch_never_leaves_the_site(offline_app: Flask, target: str) -> None:
    response = offline_app.test_client().get("/language/pt", query_string={"next": target})
    assert response.status_code == 302
    assert response.location == "/"


THEME_MESSAGES = Path(__file__).resolve().parents[2] / "provider/themes/umpass/login/messages"


def _properties(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text("ascii").splitlines() if "=" in line)
    return {key.strip(): value.encode().decode("unicode_escape") for key, value in pairs}


def test_login_theme_says_the_same_things_in_every_language() -> None:
    files = {p.stem.removeprefix("messages_"): _properties(p) for p in THEME_MESSAGES.glob("*")}
    assert set(files) == {"en", "zh_TW", "pt"}
    keys = set(files["en"])
    assert {"umpassActivationUnavailable", "identityProviderUnexpectedErrorMessage"} <= keys
    for language, messages in files.items():
        assert set(messages) == keys, language
        assert all(v.strip() for v in messages.values()), language
        # MessageFormat: a lone apostrophe would swallow the rest of the sentence.
        assert not any("'" in v for v in messages.values()), language
    assert (
        files["zh_TW"]["umpassActivationUnavailable"] != files["en"]["umpassActivationUnavailable"]
    )
