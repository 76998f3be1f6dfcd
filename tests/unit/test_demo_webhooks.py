"""The demo app's webhook receiver (scripts/devstack/demo_webhooks.py), the example for
downstream developers: it takes what `umpass deliver` sends (the real Deliverer, over real
HTTP on loopback), once per event id, and refuses a bad signature or a stale timestamp."""

from __future__ import annotations

import base64
import json
import time

import requests
from devstack.demo_app import create_demo_app
from sqlalchemy.orm import Session, sessionmaker

from provider import events
from provider.events import outbox, signing
from provider.events.deliver import Deliverer
from provider.events.endpoints import DeliverySettings, Endpoint
from tests.support.listeners import loopback_listener, serving

SECRET = "whsec_" + base64.b64encode(b"demo-webhook-secret-" + b"d" * 12).decode()


def _app():
    return create_demo_app("http://127.0.0.1:1", "umpass", webhook_secret=SECRET)


def test_the_demo_app_takes_what_umpass_deliver_sends(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        first = outbox.record(session, events.ACTIVATED, "dc00001", changed=["password"])
        second = outbox.record(session, events.PASSWORD_RESET, "dc00001", changed=["password"])
    with loopback_listener() as listener, serving(_app(), listener) as url:
        settings = DeliverySettings("unused", (Endpoint("demo", f"{url}/demo/hooks", SECRET),))
        deliverer = Deliverer(settings, sessions)
        assert deliverer.run_once() == 1  # the second waits for the first to be taken
        assert deliverer.run_once() == 1
        assert deliverer.run_once() == 0
        taken = requests.get(f"{url}/demo/hooks", timeout=10).json()
    assert [(e["id"], e["type"], e["data"]["user_id"]) for e in taken] == [
        (first, "student.activated", "dc00001"),
        (second, "student.password_reset", "dc00001"),
    ]


def test_a_bad_signature_or_a_stale_timestamp_is_refused_and_a_redelivery_taken_once() -> None:
    client = _app().test_client()
    body = json.dumps({"type": "student.unlocked", "data": {"user_id": "dc00002"}}).encode()
    now = int(time.time())

    def post(headers: dict[str, str]) -> int:
        return client.post("/demo/hooks", data=body, headers=headers).status_code

    good = signing.headers(SECRET, "evt-1", body, now)
    assert post(good) == 204
    assert post(good) == 204  # delivered again: taken as done, kept once
    assert len(client.get("/demo/hooks").json) == 1
    other = "whsec_" + base64.b64encode(b"x" * 32).decode()
    assert post(signing.headers(other, "evt-2", body, now)) == 400
    assert post(signing.headers(SECRET, "evt-3", body, now - 301)) == 400  # a late replay
    assert post(signing.headers(SECRET, "evt-4", body, now + 301)) == 400
    assert post({**signing.headers(SECRET, "evt-5", body, now), "webhook-id": "evt-6"}) == 400
    assert len(client.get("/demo/hooks").json) == 1
