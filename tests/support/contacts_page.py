"""The contacts step's form and what its sends leave behind, for the tests that drive it."""

from __future__ import annotations

import dataclasses
import re

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from werkzeug.test import TestResponse

from provider.guards import verification
from provider.services import Services
from provider.services import services as app_services
from provider.storage.models import AuditEvent, ContactSend
from tests.conftest import METRICS_TOKEN
from tests.support.flow_client import FlowClient, StudentDetails


def choose(flow: FlowClient, **fields: str) -> TestResponse:
    """The choose stage: keep both contacts unless `fields` say otherwise."""
    data = {"action": "choose", "email_choice": "keep", "phone_choice": "keep", **fields}
    return flow.submit("contacts", data)


def primary_buttons(body: str) -> list[str]:
    """The actions of the page's primary buttons (GOV.UK: exactly one per page)."""
    return re.findall(r'<button class="button" type="submit" name="action" value="([^"]+)"', body)


def a_minute_passes(services: Services, student: StudentDetails) -> None:
    """What the 60 seconds between two codes for a contact do, without waiting for them."""
    with services.sessions.begin() as session:
        sends = select(ContactSend).where(ContactSend.user_id == student.user_id)
        for send in session.scalars(sends):
            send.at -= verification.CONTACT_GAP


def tune(app: Flask, monkeypatch: pytest.MonkeyPatch, **settings: object) -> None:
    """Change the app's settings for this test (monkeypatch undoes it)."""
    svc = app_services(app)
    monkeypatch.setattr(svc, "settings", dataclasses.replace(svc.settings, **settings))


def send_refusals(services: Services, user_id: str) -> list[dict]:
    with services.reads() as session:
        return [
            event.detail
            for event in session.scalars(
                select(AuditEvent)
                .where(AuditEvent.subject == user_id, AuditEvent.action == "contacts.send_refused")
                .order_by(AuditEvent.id)
            )
        ]


def metrics(app: Flask) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    page = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert page.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(page.get_data(as_text=True))
        for sample in family.samples
    }
