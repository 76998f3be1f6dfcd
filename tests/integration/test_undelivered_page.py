"""The console's list of undelivered events (dead letters) and its "Send again" button:
admins only, CSRF-checked, audited, and the event really goes out again afterwards (the
real `Deliverer` against a real loopback receiver that first answers 500)."""

from __future__ import annotations

import base64
import secrets

import pytest
import requests
from sqlalchemy import select

from provider import events
from provider.events import outbox
from provider.events.deliver import Deliverer
from provider.events.endpoints import DeliverySettings, Endpoint
from provider.services import Services
from provider.storage.models import AuditEvent, OutboxDelivery
from tests.conftest import METRICS_TOKEN
from tests.support.console import Console, table_rows
from tests.support.realm_changes import RealmChanges
from tests.support.webhook_receiver import Receiver, until

pytestmark = pytest.mark.keycloak


@pytest.fixture(scope="module")
def staff(module_staff: RealmChanges) -> tuple[str, str]:
    """An activation admin and a help-desk member (who must not see the page)."""
    return (
        module_staff.add_staff("activation-admin").username,
        module_staff.add_staff("activation-helpdesk").username,
    )


def test_a_dead_letter_is_listed_to_admins_and_send_again_delivers_it(
    live_url: str, services: Services, staff: tuple[str, str]
) -> None:
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    healthy = False
    receiver = Receiver(secret, answer=lambda _: 204 if healthy else 500)
    receiver.start()
    user_id = f"u{secrets.token_hex(3)}"
    with services.sessions.begin() as session:
        event_id = outbox.record(session, events.ACTIVATED, user_id, changed=["password"])
    name = f"lms{secrets.token_hex(2)}"  # this test's own endpoint on the shared database
    deliverer = Deliverer(
        DeliverySettings(
            services.settings.database_url,
            (Endpoint(name, receiver.url, secret),),
            max_attempts=2,
            backoff=0,
            backoff_max=0,
        ),
        services.sessions,
    )

    def state() -> str:
        with services.sessions() as session:
            return session.scalar(
                select(OutboxDelivery.state).where(
                    OutboxDelivery.endpoint == name, OutboxDelivery.user_id == user_id
                )
            )

    try:
        # Every event on the shared database goes to this endpoint too: theirs die as well.
        until(lambda: state() == "dead", also=deliverer.run_once)
        # The scrape shows the endpoint's dead letters (other tests' events die there too).
        scrape = requests.get(
            f"{live_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=30
        ).text
        line = f'umpass_webhook_deliveries_waiting{{endpoint="{name}",state="dead"}} '
        assert float(scrape.split(line, 1)[1].split()[0]) >= 1
        admin_console = Console(live_url, staff[0])
        page = admin_console.get("/helpdesk/undelivered").text
        (row,) = [r for r in table_rows(page, "dead-letters") if r.cells[0] == user_id]
        assert row.cells[1:3] == ["student.activated", name]
        assert row.cells[4:6] == ["2", "HTTP 500"]
        delivery = row.attrs["data-delivery"]
        # Without the CSRF token: refused, nothing changes.
        bare = admin_console.session.post(
            f"{live_url}/helpdesk/undelivered/{delivery}", timeout=30, allow_redirects=False
        )
        assert bare.status_code == 400
        assert state() == "dead"
        # A help-desk member (not an admin) cannot see the page.
        desk = Console(live_url, staff[1])
        refused = desk.session.get(f"{live_url}/helpdesk/undelivered", allow_redirects=False)
        assert refused.status_code in (403, 404)
        sent = admin_console.post(f"/helpdesk/undelivered/{delivery}", "/helpdesk/undelivered")
        assert sent.status_code == 200 and "sent again in a moment" in sent.text
        assert state() == "pending"
        with services.sessions() as session:
            (audited,) = session.scalars(
                select(AuditEvent).where(
                    AuditEvent.action == "helpdesk.event_sent_again",
                    AuditEvent.subject == user_id,
                )
            )
        assert audited.actor == f"staff:{staff[0]}"
        healthy = True
        until(lambda: state() == "delivered", also=deliverer.run_once)
        assert receiver.ids().count(event_id) == 1
    finally:
        receiver.close()
