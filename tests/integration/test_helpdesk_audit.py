"""The console leaves a trace of what staff looked for and were refused, not only of what
they changed: a not-found lookup and a 403 are audited, with who did it."""

from __future__ import annotations

import secrets
import time

from flask import Flask
from sqlalchemy import select

from provider.helpdesk.auth import HELPDESK, STAFF_KEY
from provider.services import Services
from provider.storage.models import AuditEvent


def test_not_found_lookups_and_refusals_are_audited(app: Flask, services: Services) -> None:
    desk = f"desk{secrets.token_hex(3)}"
    client = app.test_client()
    with client.session_transaction() as session:
        session[STAFF_KEY] = {"username": desk, "roles": [HELPDESK], "until": time.time() + 600}
    missing = f"zz{secrets.token_hex(3)[:5]}"
    assert client.get(f"/helpdesk/students/{missing}").status_code == 404
    assert client.get("/helpdesk/audit.csv").status_code == 403  # admins only
    with services.sessions() as db:
        events = db.scalars(select(AuditEvent).where(AuditEvent.actor == f"staff:{desk}")).all()
    assert sorted((e.action, e.subject) for e in events) == [
        ("helpdesk.not_found", missing),
        ("helpdesk.refused", None),
    ]
    refused = next(e for e in events if e.action == "helpdesk.refused")
    assert refused.detail == {"page": "/helpdesk/audit.csv"}
