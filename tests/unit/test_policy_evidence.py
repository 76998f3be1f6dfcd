"""Evidence of acceptance kept by the service, its counts, and the policy commands."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from provider import cli
from provider.policies import documents
from provider.policies import evidence as ev
from provider.policies.published import publish
from provider.storage.models import ActivationCode, AuditEvent, Student

T1 = "2026-12-01T09:00:00Z"
T2 = "2026-12-02T09:00:00Z"


def _activated(sessions: sessionmaker[Session], *user_ids: str) -> None:
    """Students this service activated: enrolled, with a used code."""
    now = datetime.now(UTC)
    with sessions.begin() as db:
        for user_id in user_ids:
            db.add(Student(user_id=user_id, dob_hash="x", id_last4_hash="x", intake="t"))
            db.add(ActivationCode(user_id=user_id, code_hash=user_id, expires_at=now, used_at=now))


def _count(sessions: sessionmaker[Session]) -> dict[str, tuple[int, int | None]]:
    with sessions() as db:
        return {r.policy.key: (r.accepted, r.still_due) for r in ev.counts(db, documents())}


def test_acceptances_are_kept_once_each_with_their_first_time_and_audited(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as db:
        conn = db.connection()
        new = ev.record(conn, "ab12345", [f"privacy-notice@2026-08:{T1}", "junk"])
        again = ev.record(conn, "ab12345", [f"privacy-notice@2026-08:{T2}"])
    assert [a.key for a in new] == ["privacy-notice@2026-08"] and again == []
    with sessions() as db:
        (row,) = ev.acceptances(db, "privacy-notice", "2026-08")
        events = list(db.scalars(select(AuditEvent).where(AuditEvent.action == ev.ACCEPTED)))
    assert (row.user_id, row.accepted_at) == ("ab12345", datetime(2026, 12, 1, 9, tzinfo=UTC))
    assert [(e.subject, e.detail["version"], e.detail["at"]) for e in events] == [
        ("ab12345", "2026-08", T1)
    ]


def test_counts_say_who_accepted_each_version_and_who_still_must_accept_the_current(
    sessions: sessionmaker[Session],
) -> None:
    _activated(sessions, "aa00001", "aa00002", "aa00003")
    with sessions.begin() as db:
        for user_id in ("aa00001", "aa00002"):
            ev.record(db.connection(), user_id, [f"it-acceptable-use@2026-09:{T1}"])
    assert _count(sessions)["it-acceptable-use@2026-09"] == (2, 1)
    assert _count(sessions)["it-acceptable-use@2027-01"] == (0, None)  # not published
    publish(sessions, "it-acceptable-use", "2027-01", "cli:t")
    with sessions.begin() as db:
        ev.record(db.connection(), "aa00003", [f"it-acceptable-use@2027-01:{T2}"])
    counts = _count(sessions)
    assert counts["it-acceptable-use@2027-01"] == (1, 2)  # current now: two must accept it
    assert counts["it-acceptable-use@2026-09"] == (2, None)  # superseded: nobody is asked
    assert counts["privacy-notice@2026-08"] == (0, 3)


@pytest.fixture
def command_env(monkeypatch, tmp_path, sessions) -> None:
    url = sessions.kw["bind"].url.render_as_string(hide_password=False)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("UMPASS_KC_CLIENT_SECRET", "x")
    monkeypatch.setenv("UMPASS_TESTING", "1")


def test_publish_policy_command_publishes_as_the_operator_and_refuses_plainly(
    command_env, sessions: sessionmaker[Session], capsys, monkeypatch
) -> None:
    monkeypatch.setattr(cli.getpass, "getuser", lambda: "ana")
    assert cli.main(["publish-policy", "it-acceptable-use", "2027-01"]) == 0
    assert "it-acceptable-use@2027-01 is published" in capsys.readouterr().out
    with sessions() as db:
        (event,) = db.scalars(select(AuditEvent).where(AuditEvent.action == "policy.published"))
    assert event.actor == "cli:ana"
    assert cli.main(["publish-policy", "it-acceptable-use", "2027-01"]) == 2
    assert "error: it-acceptable-use@2027-01 is current" in capsys.readouterr().err
    assert cli.main(["policies"]) == 0
    out = capsys.readouterr().out
    assert "2027-01" in out and "current" in out
