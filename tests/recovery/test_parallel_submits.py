"""Twenty submits of the recovery's last step at once write once: one password set, one
sign-out, one lock lifted, one notice to each verified contact, one audit event.

The submits truly race: two service replicas under gunicorn on the run's database
(PostgreSQL by default), each a process of its own, so no in-process lock lines them up;
every post is sent whole but for its last byte and the last bytes are released together
(tests/support/replicas.race), half to each replica. Only the flow's compare-and-set claim
(provider/recovery/writes.py) stands between them and a second write. The replicas reach
Keycloak through a proxy that counts every request they send (a second lift of a lock
already lifted changes nothing, so Keycloak would not record it), and Keycloak's admin
events say what it applied.

A submit can also arrive after the race, while the winner is still telling the contacts
(a slow mail server): it must find the flow still claimed, not start the writes again.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from keycloak import KeycloakAdmin

from provider.delivery.smtp import SmtpMailer, SmtpSettings
from provider.services import Services
from provider.services import services as app_services
from tests.support.admin_events import KeycloakWrites
from tests.support.flow_at import DONE_PASSWORD
from tests.support.inbox import Inbox, _BoundController
from tests.support.listeners import loopback_listener
from tests.support.recovery import RecoveryClient, put_recovery_at
from tests.support.recovery_at import (
    CountedReplicas,
    hold_recovery,
    holding,
    recovery_submit,
)
from tests.support.recovery_record import (
    Locked,
    RecoveryWrites,
    audited,
    locked_at_keycloak,
    recovery_writes,
    session_alive,
    signs_in,
)
from tests.support.replicas import HttpBrowser, race

NEW = "quiet harbour 4417 kite"
PARALLEL = 20


def _race_the_last_step(
    counted: CountedReplicas, flow_id: str, step: str, form: dict[str, str]
) -> list[int]:
    replicas = counted.replicas
    browser = HttpBrowser(replicas[0].url)
    hold_recovery(browser, flow_id)
    # One browser, one form, submitted twenty times at once: ten to each replica.
    submits = [recovery_submit(browser, replica.url, step, form) for replica in replicas]
    statuses = race([submits[i % 2] for i in range(PARALLEL)])
    # One went on; the others were told it is under way, or (arriving after it finished)
    # sent to the last page.
    assert set(statuses) <= {302, 409}, statuses
    assert statuses.count(409) >= 1, statuses
    return statuses


def test_twenty_parallel_new_password_submits_write_once(
    counted_replicas: CountedReplicas,
    app: Flask,
    inbox: Inbox,
    locked: Locked,
    services: Services,
    admin: KeycloakAdmin,
    keycloak_writes: KeycloakWrites,
) -> None:
    who, account = locked.who, locked.account
    flow_id = put_recovery_at(app, None, "new-password", who).flow_id
    statuses = _race_the_last_step(
        counted_replicas, flow_id, "new-password", {"password": NEW, "confirm": NEW}
    )
    once = RecoveryWrites(passwords_set=1, sign_outs=1, locks_lifted=1)
    sent = counted_replicas.writes_sent(services.settings.keycloak.realm, account)
    assert sent == once, (statuses, sent)
    assert recovery_writes(admin, account) == once
    assert (len(inbox.mails_to(who.email)), len(inbox.texts_to(who.phone))) == (1, 1)
    assert audited(services, who.user_id, "recovery.password_reset") == 1
    assert not locked_at_keycloak(services, account)
    assert admin.get_sessions(account) == []
    assert not session_alive(services, locked.refresh)
    assert signs_in(services, who.user_id, NEW)


def test_twenty_parallel_unlock_submits_write_once(
    counted_replicas: CountedReplicas,
    app: Flask,
    inbox: Inbox,
    locked: Locked,
    services: Services,
    admin: KeycloakAdmin,
    keycloak_writes: KeycloakWrites,
) -> None:
    who, account = locked.who, locked.account
    flow_id = put_recovery_at(app, None, "choose", who).flow_id
    statuses = _race_the_last_step(counted_replicas, flow_id, "choose", {"choice": "unlock"})
    once = RecoveryWrites(passwords_set=0, sign_outs=0, locks_lifted=1)
    sent = counted_replicas.writes_sent(services.settings.keycloak.realm, account)
    assert sent == once, (statuses, sent)
    assert recovery_writes(admin, account) == once
    assert (len(inbox.mails_to(who.email)), len(inbox.texts_to(who.phone))) == (1, 1)
    assert audited(services, who.user_id, "recovery.unlocked") == 1
    assert not locked_at_keycloak(services, account)
    assert signs_in(services, who.user_id, DONE_PASSWORD)


class _SlowMail:
    """A mail server that holds the first message until the test lets it go."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.received: list[list[str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        first = not self.arrived.is_set()
        self.arrived.set()
        if first:
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 60)
        self.received.append(list(envelope.rcpt_tos))
        return "250 OK"


@pytest.fixture
def slow_mail(app: Flask, monkeypatch: pytest.MonkeyPatch) -> Iterator[_SlowMail]:
    handler = _SlowMail()
    controller = _BoundController(handler, loopback_listener())  # type: ignore[arg-type]
    controller.start()
    monkeypatch.setattr(
        app_services(app),
        "mailer",
        SmtpMailer(SmtpSettings(host="127.0.0.1", port=int(controller.port), timeout=60)),
    )
    try:
        yield handler
    finally:
        handler.release.set()
        controller.stop()


@pytest.mark.parametrize("step", ["new-password", "choose"])
def test_a_submit_while_the_contacts_are_told_writes_nothing_more(
    step: str,
    slow_mail: _SlowMail,
    app: Flask,
    inbox: Inbox,
    locked: Locked,
    services: Services,
    admin: KeycloakAdmin,
    keycloak_writes: KeycloakWrites,
) -> None:
    who, account = locked.who, locked.account
    flow_id = put_recovery_at(app, None, step, who).flow_id
    form = {"password": NEW, "confirm": NEW} if step == "new-password" else {"choice": "unlock"}
    first_tab, second_tab = (holding(RecoveryClient(app, inbox), flow_id) for _ in range(2))
    answers: dict[str, Any] = {}
    first = threading.Thread(target=lambda: answers.update(first=first_tab.post(step, form)))
    first.start()
    try:
        assert slow_mail.arrived.wait(60), "the first submit never told the contacts"
        late = second_tab.post(step, form)  # the writes are done, the notices not yet
    finally:
        slow_mail.release.set()
        first.join(60)
    assert late.status_code == 409, late.get_data(as_text=True)[:600]
    assert answers["first"].headers["Location"].endswith("/recover/finished")
    reset = step == "new-password"
    assert recovery_writes(admin, account) == RecoveryWrites(
        passwords_set=int(reset), sign_outs=int(reset), locks_lifted=1
    )
    assert slow_mail.received == [[who.email]]
    assert len(inbox.texts_to(who.phone)) == 1
    event = "recovery.password_reset" if reset else "recovery.unlocked"
    assert audited(services, who.user_id, event) == 1
