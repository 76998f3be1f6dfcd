"""The scheduled realm check alerts on a change, not on every run, against the previous
STORED result: a problem is mailed the first run it appears, not again while it stays,
again when it comes back after a repair; an email that could not be sent is tried again
next run. (Two runs at once: tests/integration/test_realm_health_store.py.)"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from provider.delivery import DeliveryFailed, EmailMessage
from provider.realm_health import alert, command, stored
from provider.realm_health.checks import CheckResult
from provider.realm_health.drift import DriftItem
from provider.realm_health.report import HealthReport
from provider.storage.models import RealmHealthCheck

TO = "it@example.edu"


class RecordingMailer:
    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []
        self.fail = False

    def send(self, message: EmailMessage) -> None:
        if self.fail:
            raise DeliveryFailed("email")
        self.sent.append(message)


def _report(*, drift: tuple[str, ...] = (), red: tuple[str, ...] = ()) -> HealthReport:
    checks = [CheckResult(key, key, "why", False, "found") for key in red]
    checks.append(CheckResult("ok-one", "ok-one", "why", True, ""))
    items = [DriftItem("change", subject, "") for subject in drift]
    return HealthReport("uni", datetime.now(UTC), checks, items)


def test_decide_names_only_what_is_new() -> None:
    assert alert.decide(None, {"a"}).new == {"a"}
    assert alert.decide(frozenset({"a"}), {"a"}).send is False
    assert alert.decide(frozenset({"a"}), {"a", "b"}).new == {"b"}
    assert alert.decide(frozenset({"a", "b"}), set()).send is False


def test_a_problem_is_mailed_once_while_it_stays(sessions: sessionmaker[Session]) -> None:
    mailer = RecordingMailer()
    drifted = _report(drift=("browserFlow binding",), red=("browser-flow",))
    assert command.run(drifted, sessions, mailer, TO)[0] == 1
    assert len(mailer.sent) == 1
    assert "New: check:browser-flow" in mailer.sent[0].text
    assert "New: drift:change browserFlow binding" in mailer.sent[0].text
    assert mailer.sent[0].to == TO
    status, note = command.run(drifted, sessions, mailer, TO)
    assert (status, note) == (1, "no new problem: no email")
    assert len(mailer.sent) == 1


def test_each_run_is_stored_with_what_it_found(sessions: sessionmaker[Session]) -> None:
    command.run(_report(red=("browser-flow",)), sessions, RecordingMailer(), TO)
    with sessions() as db:
        row = stored.latest(db)
        assert row is not None
        assert (row.readable, row.healthy, row.failed_checks, row.drift_items) == (
            True,
            False,
            1,
            0,
        )
        assert row.problems == row.told == ["check:browser-flow"]
        assert row.result["checks"][0]["key"] == "browser-flow"


def test_a_new_problem_beside_an_old_one_is_mailed_with_only_the_new_one(
    sessions: sessionmaker[Session],
) -> None:
    mailer = RecordingMailer()
    command.run(_report(red=("browser-flow",)), sessions, mailer, TO)
    command.run(_report(red=("browser-flow", "duplicate-emails-off")), sessions, mailer, TO)
    assert len(mailer.sent) == 2
    assert "New: check:duplicate-emails-off" in mailer.sent[1].text
    assert "New: check:browser-flow" not in mailer.sent[1].text


def test_repaired_then_back_is_mailed_again(sessions: sessionmaker[Session]) -> None:
    mailer = RecordingMailer()
    command.run(_report(red=("browser-flow",)), sessions, mailer, TO)
    assert command.run(_report(), sessions, mailer, TO)[0] == 0
    command.run(_report(red=("browser-flow",)), sessions, mailer, TO)
    assert len(mailer.sent) == 2


def test_an_email_that_failed_is_sent_next_run(sessions: sessionmaker[Session]) -> None:
    mailer = RecordingMailer()
    mailer.fail = True
    status, _ = command.run(_report(red=("browser-flow",)), sessions, mailer, TO)
    assert status == 2
    with sessions() as db:
        assert db.scalars(select(RealmHealthCheck.told)).one() == []  # stored, not told
    mailer.fail = False
    command.run(_report(red=("browser-flow",)), sessions, mailer, TO)
    assert len(mailer.sent) == 1


def test_an_unreadable_realm_is_a_problem_of_its_own(sessions: sessionmaker[Session]) -> None:
    mailer = RecordingMailer()
    unreadable = HealthReport("uni", datetime.now(UTC), error="refused")
    assert command.run(unreadable, sessions, mailer, TO)[0] == 2
    assert "New: error:unreadable" in mailer.sent[0].text
    with sessions() as db:
        assert stored.latest(db).readable is False
