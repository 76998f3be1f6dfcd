"""Keycloak's sign-in page, in the realm's `umpass` theme, points to activation in every
language the realm offers."""

from __future__ import annotations

import html
import re

import pytest
import requests

from tests.conftest import KeycloakUnderTest, RealmUnderTest


@pytest.mark.parametrize(
    ("locale", "prompt", "link"),
    [
        ("en", "New student?", "Activate your account"),
        ("zh-TW", "新生？", "啟用帳戶"),
        ("pt", "Novo estudante?", "Ative a sua conta"),
    ],
)
def test_sign_in_page_offers_activation(
    keycloak_server: KeycloakUnderTest, realm: RealmUnderTest, locale: str, prompt: str, link: str
) -> None:
    page = requests.get(
        f"{keycloak_server.url}/realms/{realm.name}/protocol/openid-connect/auth",
        params={
            "client_id": "umpass-demo",
            "redirect_uri": f"{realm.demo_base}/cb",
            "response_type": "code",
            "scope": "openid",
            "code_challenge": "x" * 43,
            "code_challenge_method": "S256",
            "ui_locales": locale,
        },
        timeout=30,
    )
    assert page.status_code == 200
    body = html.unescape(page.text)
    block = re.search(r'<div id="umpass-activate".*?</div>', body, re.S)
    assert block, "the theme's footer is missing"
    assert prompt in block.group(0) and link in block.group(0)
    href = re.search(r'id="umpass-activate-link" href="([^"]+)"', block.group(0))
    assert href and href.group(1).endswith("/activate/")
    css = re.search(r'href="([^"]+/login/umpass/css/umpass\.css)"', page.text)
    assert css and requests.get(f"{keycloak_server.url}{css.group(1)}", timeout=30).ok
