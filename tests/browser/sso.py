"""Keycloak's sign-in pages as a student meets them: username first, then the password."""

from __future__ import annotations

from playwright.sync_api import Page


def enter_username(page: Page, username: str) -> None:
    page.wait_for_selector("#username")
    page.fill("#username", username)
    page.click("#kc-login")


def enter_password(page: Page, password: str) -> None:
    page.wait_for_selector("#password")
    page.fill("#password", password)
    page.click("#kc-login")
