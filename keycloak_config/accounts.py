"""Every account of a realm, page by page (the only reads of accounts the extension does
beyond one at a time)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from keycloak import KeycloakAdmin

PAGE = 200


def every_account(admin: KeycloakAdmin) -> Iterator[dict[str, Any]]:
    """Full representations (with attributes) of the current realm's accounts."""
    first = 0
    while True:
        page = admin.get_users({"first": first, "max": PAGE, "briefRepresentation": False})
        yield from page
        if len(page) < PAGE:
            return
        first += PAGE
