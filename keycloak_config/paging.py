"""Everything of one kind in a realm, page by page: Keycloak answers a list with at most
100 (identity providers) or the requested page, never everything at once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from keycloak import KeycloakAdmin

PAGE = 100


def every_account(admin: KeycloakAdmin) -> Iterator[dict[str, Any]]:
    """Full representations (with attributes) of the current realm's accounts."""
    first = 0
    while True:
        page = admin.get_users({"first": first, "max": PAGE, "briefRepresentation": False})
        yield from page
        if len(page) < PAGE:
            return
        first += PAGE


def every_identity_provider(admin: KeycloakAdmin, realm: str) -> Iterator[dict[str, Any]]:
    """Full representations of the realm's identity providers (a federation has hundreds)."""
    first = 0
    while True:
        response = admin.connection.raw_get(
            f"admin/realms/{realm}/identity-provider/instances",
            first=first,
            max=PAGE,
            briefRepresentation="false",
        )
        page = response.json()
        yield from page
        if len(page) < PAGE:
            return
        first += PAGE


def every_item(admin: KeycloakAdmin, path: str, **params: str) -> Iterator[dict[str, Any]]:
    """Every entry of a paged admin list (`first`/`max`), e.g. a search or a group's members."""
    first = 0
    while True:
        response = admin.connection.raw_get(path, first=str(first), max=str(PAGE), **params)
        response.raise_for_status()
        page = response.json()
        yield from page
        if len(page) < PAGE:
            return
        first += PAGE
