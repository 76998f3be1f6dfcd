"""The service's evidence completed from the accounts (students activated before it kept
its own): one read per activated student, what is missing kept, a second run adds nothing."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import update

from provider.keycloak import ACCEPTED_POLICIES
from provider.policies import backfill
from provider.policies import evidence as ev
from provider.services import Services
from provider.storage.models import ActivationCode
from tests.browser.test_activation_in_chromium import PASSWORD
from tests.support.students import enrol_student

RECORD = "privacy-notice@2026-08:2026-10-01T08:00:00Z"


def test_backfill_keeps_what_the_accounts_hold_once(services: Services) -> None:
    who = enrol_student(services, "b")
    account = services.keycloak.find_user(who.user_id)
    assert account is not None
    # Activated the old way: the evidence on the account only.
    services.keycloak.activate(account.id, PASSWORD, attributes={ACCEPTED_POLICIES: [RECORD]})
    with services.sessions.begin() as db:
        db.execute(
            update(ActivationCode)
            .where(ActivationCode.user_id == who.user_id)
            .values(used_at=datetime.now(UTC))
        )
    pending = enrol_student(services, "b")  # never activated: not read

    first = backfill.backfill(services)
    with services.reads() as db:
        kept = {r.user_id: r.accepted_at for r in ev.acceptances(db, "privacy-notice", "2026-08")}
    assert kept[who.user_id] == datetime(2026, 10, 1, 8, tzinfo=UTC)
    assert pending.user_id not in kept
    assert first.kept >= 1
    again = backfill.backfill(services)
    assert again.kept == 0 and again.students == first.students
