"""Keycloak's sign-in pages change language without JavaScript, as the service's do.

keycloak.v2's language select moves on only by a script; on a phone without JavaScript the
`umpass` theme shows plain links instead (footer.ftl, `@media (scripting: none)`), and with
JavaScript the select alone."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from playwright.sync_api import Browser, expect

from tests.browser.page_states import keycloak_text
from tests.conftest import KeycloakUnderTest, RealmUnderTest
from tests.support.keycloak_login import authorization_request, demo_callback
from tests.support.shots import Shots

PHONE = {"width": 360, "height": 740}


def _sign_in_url(keycloak_server: KeycloakUnderTest, realm: RealmUnderTest) -> str:
    params, _verifier = authorization_request("umpass-demo", demo_callback())
    query = urlencode({**params, "ui_locales": "en"})
    return f"{keycloak_server.url}/realms/{realm.name}/protocol/openid-connect/auth?{query}"


def test_links_without_javascript(
    browser: Browser,
    keycloak_server: KeycloakUnderTest,
    realm: RealmUnderTest,
    shots_in: Callable[[str], Shots],
) -> None:
    shots = shots_in("keycloak-languages")
    context = browser.new_context(viewport=PHONE, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(_sign_in_url(keycloak_server, realm))
        expect(page.locator("html")).to_have_attribute("lang", "en")
        languages = page.get_by_role("navigation", name="Language")
        expect(languages).to_be_visible()
        expect(page.locator("#login-select-toggle")).to_be_hidden()
        expect(languages.locator("[aria-current=true]")).to_have_text("English")
        shots.take(page, "en-no-javascript")
        for locale in ("pt", "zh-TW"):
            languages.locator(f"a[lang={locale}]").click()
            expect(page.locator("html")).to_have_attribute("lang", locale)
            title = keycloak_text(keycloak_server.url, realm.name, locale, "loginAccountTitle")
            expect(page.locator("#kc-page-title")).to_have_text(title)
            languages = page.get_by_role(
                "navigation",
                name=keycloak_text(keycloak_server.url, realm.name, locale, "umpassLanguages"),
            )
            expect(languages.locator("[aria-current=true]")).to_have_attribute("lang", locale)
            shots.take(page, f"{locale}-no-javascript")
    finally:
        context.close()


def test_select_alone_with_javascript(
    browser: Browser, keycloak_server: KeycloakUnderTest, realm: RealmUnderTest
) -> None:
    context = browser.new_context(viewport=PHONE)
    try:
        page = context.new_page()
        page.goto(_sign_in_url(keycloak_server, realm))
        expect(page.locator("#login-select-toggle")).to_be_visible()
        expect(page.locator("#umpass-languages")).to_be_hidden()
    finally:
        context.close()
