"""`umpass purge` on SQLite: each kind's boundary, what must stay, idempotence, dry runs,
batches, two purges at once, the settings and the command."""

from __future__ import annotations

import threading
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from provider import cli, events
from provider.config import ConfigError
from provider.events import outbox, queue
from provider.flows.engine import MAX_LIFETIME, FlowEngine, FlowState
from provider.guards import verification
from provider.helpdesk.funnel import funnels
from provider.keyed_hash import KeyedHasher
from provider.purge import KINDS, SENDS_COUNTED, Retention, purge
from provider.storage import migrate
from provider.storage.engine import make_engine
from provider.storage.models import (
    ActivationCode,
    AuditEvent,
    ContactSend,
    ContactVerification,
    Flow,
    IdentifyLockout,
    OidcAccessToken,
    OidcAuthorizationCode,
    OutboxDelivery,
    OutboxEvent,
    Student,
)
from tests.support import purge_rows as rows
from tests.support.flow_data import Notes
from tests.support.purge_rows import NOW

GRACE = Retention().grace
SECOND = timedelta(seconds=1)
DAY = timedelta(days=1)


@pytest.fixture
def db(tmp_path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path}/purge.db")
    migrate.upgrade(engine)
    return engine


@pytest.fixture
def sessions(db: Engine) -> sessionmaker[Session]:
    return sessionmaker(db, expire_on_commit=False)


# -- flows ---------------------------------------------------------------------------------


def test_flows_go_once_expired_past_the_grace(db, sessions) -> None:
    rows.add(
        sessions,
        rows.flow("live", created=NOW - timedelta(minutes=10), expires=NOW + timedelta(minutes=20)),
        rows.flow("idle-in-grace", created=NOW - timedelta(hours=1), expires=NOW - GRACE + SECOND),
        rows.flow("idle-gone", created=NOW - timedelta(hours=1), expires=NOW - GRACE),
        rows.flow(
            "old-in-grace",
            created=NOW - MAX_LIFETIME - GRACE + SECOND,
            expires=NOW + timedelta(minutes=20),
        ),
        rows.flow(
            "old-gone", created=NOW - MAX_LIFETIME - GRACE, expires=NOW + timedelta(minutes=20)
        ),
    )
    assert purge(db, Retention(), now=NOW).counts["flows"] == 2
    assert rows.ids(sessions, Flow.id_hash) == {"live", "idle-in-grace", "old-in-grace"}


def test_no_flow_the_engine_would_resume_is_deleted(db, sessions) -> None:
    # Without grace, the purge deletes exactly the flows FlowEngine no longer resumes.
    hasher = KeyedHasher(b"unit-test-key-" + b"x" * 32)
    engine = FlowEngine(sessions, hasher, ("identify", "policies", "done"), Notes)
    minutes = (-200, -121, -120, -119, -60, -1, 0, 1, 30)
    cookies = {}
    for created in minutes:
        for expires in minutes:
            if expires >= created:
                cookie = f"c{created}_{expires}"
                cookies[cookie] = engine.key(FlowState(flow_id=cookie, step="policies"))
                rows.add(
                    sessions,
                    rows.flow(
                        cookies[cookie],
                        created=NOW + timedelta(minutes=created),
                        expires=NOW + timedelta(minutes=expires),
                    ),
                )
    resumable = {c for c in cookies if engine.load_or_start(c, NOW).flow_id is not None}
    assert resumable and len(resumable) < len(cookies)
    purge(db, Retention(grace=timedelta(0)), now=NOW)
    assert rows.ids(sessions, Flow.id_hash) == {cookies[c] for c in resumable}


# -- contact verifications and sends ---------------------------------------------------------


def test_verifications_go_with_their_flow(db, sessions) -> None:
    rows.add(
        sessions,
        rows.flow("live", created=NOW - timedelta(minutes=10), expires=NOW + timedelta(minutes=20)),
        rows.flow("in-grace", created=NOW - timedelta(hours=1), expires=NOW - GRACE + SECOND),
        rows.flow("expired", created=NOW - timedelta(hours=1), expires=NOW - GRACE),
        rows.verification("live"),
        rows.verification("in-grace"),
        rows.verification("expired"),
        rows.verification("finished"),  # its flow was deleted ("Start again")
    )
    report = purge(db, Retention(), now=NOW)
    assert report.counts["contact verifications"] == 2
    assert rows.ids(sessions, ContactVerification.flow_key) == {"live", "in-grace"}


def test_sends_stay_while_a_throttle_counts_them(db, sessions) -> None:
    hasher = KeyedHasher(b"unit-test-key-" + b"x" * 32)
    phone = "+85362345678"
    contact = verification.contact_hash(hasher, "phone", phone)
    # The per-student cap looks back furthest: a day.
    window = SENDS_COUNTED
    assert window == verification.DAY
    cap = verification.SendCaps(student=((5, window),))
    rows.add(
        sessions,
        # Five sends in the last hour: the per-contact throttle refuses a sixth.
        *(
            ContactSend(
                contact_hash=contact, flow_key="f", at=NOW - verification.HOUR + SECOND * (i + 1)
            )
            for i in range(verification.CONTACT_PER_HOUR)
        ),
        # Five sends of one student over the day (other contacts, other flows): the
        # student's cap refuses a sixth, so none of them may go.
        *(
            ContactSend(
                contact_hash=f"c{i}", flow_key=f"g{i}", user_id="s1", at=NOW - window + SECOND
            )
            for i in range(5)
        ),
        ContactSend(contact_hash=contact, flow_key="f", at=NOW - window - GRACE + SECOND),
        ContactSend(contact_hash=contact, flow_key="f", at=NOW - window - GRACE),
        ContactSend(contact_hash="other", flow_key="g", at=NOW - 2 * DAY),
    )
    assert purge(db, Retention(), now=NOW).counts["contact sends"] == 2
    assert purge(db, Retention(grace=timedelta(0)), now=NOW).counts["contact sends"] == 1
    with pytest.raises(verification.Throttled):
        verification.issue(
            sessions, hasher, flow_key="f2", student="s2", channel="phone", value=phone, now=NOW
        )
    with pytest.raises(verification.StudentCapped):
        verification.issue(
            sessions,
            hasher,
            flow_key="f3",
            student="s1",
            channel="email",
            value="s1@example.edu",
            now=NOW,
            caps=cap,
        )


# -- OIDC ----------------------------------------------------------------------------------------


def test_oidc_codes_and_tokens_go_after_expiry(db, sessions) -> None:
    id_token_lives = timedelta(minutes=5)
    rows.add(
        sessions,
        rows.oidc_code("live", NOW + timedelta(seconds=30)),
        rows.oidc_code("nonce-kept", NOW - id_token_lives - GRACE + SECOND),
        rows.oidc_code("gone", NOW - id_token_lives - GRACE),
        rows.token("live", NOW + timedelta(minutes=4)),
        rows.token("in-grace", NOW - GRACE + SECOND),
        rows.token("gone", NOW - GRACE),
    )
    counts = purge(db, Retention(), now=NOW).counts
    assert (counts["OIDC codes"], counts["OIDC access tokens"]) == (1, 1)
    assert rows.ids(sessions, OidcAuthorizationCode.code_hash) == {"live", "nonce-kept"}
    assert rows.ids(sessions, OidcAccessToken.token_hash) == {"live", "in-grace"}


# -- identify lockouts ---------------------------------------------------------------------------


def test_lockouts_keep_their_doubling_for_the_reset_period(db, sessions) -> None:
    reset = timedelta(days=Retention().lockout_reset_days)
    rows.add(
        sessions,
        rows.lockout("locked", updated=NOW - 2 * reset, locks=5, until=NOW + timedelta(hours=8)),
        rows.lockout("history", updated=NOW - reset + SECOND, locks=3, until=NOW - reset + SECOND),
        rows.lockout("forgotten", updated=NOW - reset, locks=3, until=NOW - reset),
        rows.lockout("counting", updated=NOW - timedelta(hours=1), failures=2),
        rows.lockout("blank", updated=NOW),  # after a success: the same as no row
    )
    assert purge(db, Retention(), now=NOW).counts["identify lockouts"] == 2
    assert rows.ids(sessions, IdentifyLockout.user_id) == {"locked", "history", "counting"}


# -- activation codes ----------------------------------------------------------------------------


def test_only_superseded_codes_long_dead_go_and_the_funnel_is_unchanged(db, sessions) -> None:
    keep = timedelta(days=Retention().code_days)
    long_ago = NOW - keep - timedelta(days=40)
    rows.add(
        sessions,
        *(rows.student(u) for u in ("pending", "reissued", "active", "recent", "thrice", "used")),
    )
    rows.add(
        sessions,
        # Never activated, the only code long expired: the funnel counts it as expired.
        rows.code("pending", 1, issued=long_ago),
        # Re-issued: the revoked first code goes, the live one stays.
        rows.code("reissued", 1, issued=long_ago, revoked=NOW - keep),
        rows.code("reissued", 2, issued=NOW - DAY),
        # Activated: the used code stays (activation's proof), the revoked one goes.
        rows.code("active", 1, issued=long_ago, revoked=NOW - keep),
        rows.code("active", 2, issued=NOW - keep, used=NOW - keep + DAY),
        # Revoked less than the retention ago (and not yet expired then): the help desk
        # still shows it.
        rows.code("recent", 1, issued=NOW - keep - 10 * DAY, revoked=NOW - keep + SECOND),
        rows.code("recent", 2, issued=NOW - DAY),
        # Used, then re-issued by mistake: the used code stays even though superseded.
        rows.code("used", 1, issued=long_ago, used=long_ago + DAY),
        rows.code("used", 2, issued=long_ago + DAY, revoked=long_ago + 2 * DAY),
        # Two dead codes superseded by a third dead one: only the newest stays.
        rows.code("thrice", 1, issued=long_ago, revoked=long_ago + DAY),
        rows.code("thrice", 2, issued=long_ago + DAY, revoked=long_ago + DAY),
        rows.code("thrice", 3, issued=long_ago + DAY),
    )
    before = funnels(SimpleNamespace(reads=sessions), now=NOW)
    assert purge(db, Retention(code_days=0), now=NOW).counts["activation codes"] == 0  # forever
    assert purge(db, Retention(), now=NOW).counts["activation codes"] == 4
    assert rows.ids(sessions, ActivationCode.code_hash) == {
        "pending-1",
        "reissued-2",
        "active-2",
        "recent-1",
        "recent-2",
        "thrice-3",
        "used-1",
        "used-2",
    }
    after = funnels(SimpleNamespace(reads=sessions), now=NOW)
    assert after == before and after[0].counts["expired"] == 2
    assert len(rows.ids(sessions, Student.user_id)) == 6


# -- audit events --------------------------------------------------------------------------------


def test_audit_events_go_after_the_retention_and_0_keeps_them(db, sessions) -> None:
    keep = timedelta(days=Retention().audit_days)
    rows.add(
        sessions,
        AuditEvent(at=NOW - keep, actor="student", action="identify.ok", subject="a"),
        AuditEvent(at=NOW - keep + SECOND, actor="student", action="identify.ok", subject="b"),
    )
    assert purge(db, Retention(audit_days=0), now=NOW).counts["audit events"] == 0
    assert purge(db, Retention(), now=NOW).counts["audit events"] == 1
    assert rows.ids(sessions, AuditEvent.subject) == {"b"}


# -- outbox events ---------------------------------------------------------------------------------

EVENT_KEPT = timedelta(days=Retention().event_days)
AUDIT_KEPT = timedelta(days=Retention().audit_days)


def _events_left(sessions) -> set[str]:
    return rows.ids(sessions, OutboxEvent.uuid)


def _deliveries_of(sessions, event_id: int) -> list[str]:
    with sessions() as session:
        return sorted(
            session.scalars(select(OutboxDelivery.state).where(OutboxDelivery.event_id == event_id))
        )


def test_an_event_goes_once_delivered_everywhere_and_older_than_the_retention(db, sessions) -> None:
    old, new = NOW - EVENT_KEPT, NOW - EVENT_KEPT + SECOND
    gone = rows.event(sessions, "delivered-old", created=old, states=("delivered", "delivered"))
    rows.event(sessions, "delivered-new", created=new, states=("delivered", "delivered"))
    # Still being sent, or an admin may send it again: kept, however old.
    kept = {
        "dead": rows.event(sessions, "dead", created=old, states=("delivered", "dead")),
        "pending": rows.event(sessions, "pending", created=old, states=("delivered", "pending")),
        "leased": rows.event(sessions, "leased", created=old, states=("leased",)),
        "retrying": rows.event(sessions, "retrying", created=old, states=("retrying",)),
    }
    # No delivery row yet: purge cannot know whether a deliver process will send it.
    rows.event(sessions, "not-fanned-out", created=old)
    dry = purge(db, Retention(), dry_run=True, now=NOW)
    assert dry.counts["outbox events"] == 1
    assert purge(db, Retention(), now=NOW).counts["outbox events"] == 1
    assert _events_left(sessions) == {
        rows.event_uuid(n)
        for n in ("delivered-new", "dead", "pending", "leased", "retrying", "not-fanned-out")
    }
    assert _deliveries_of(sessions, gone) == []  # went with it, in its transaction
    assert _deliveries_of(sessions, kept["dead"]) == ["dead", "delivered"]  # untouched
    assert _deliveries_of(sessions, kept["pending"]) == ["delivered", "pending"]
    assert purge(db, Retention(), now=NOW).counts["outbox events"] == 0


def test_an_event_no_endpoint_ever_took_goes_only_with_the_audit_log(db, sessions) -> None:
    rows.event(sessions, "never-sent-gone", created=NOW - AUDIT_KEPT)
    rows.event(sessions, "never-sent-kept", created=NOW - AUDIT_KEPT + SECOND)
    assert purge(db, Retention(audit_days=0), now=NOW).counts["outbox events"] == 0
    assert purge(db, Retention(), now=NOW).counts["outbox events"] == 1
    assert _events_left(sessions) == {rows.event_uuid("never-sent-kept")}
    # An event retention longer than the audit's holds it that long.
    assert purge(db, Retention(audit_days=1, event_days=3650), now=NOW).counts["outbox events"] == 0


def test_event_retention_0_keeps_every_event(db, sessions) -> None:
    old = NOW - timedelta(days=5000)
    rows.event(sessions, "delivered", created=old, states=("delivered",))
    rows.event(sessions, "never-sent", created=old)
    assert purge(db, Retention(event_days=0), now=NOW).counts["outbox events"] == 0
    assert len(_events_left(sessions)) == 2


def test_events_go_in_batches_each_with_its_deliveries(db, sessions) -> None:
    old = NOW - EVENT_KEPT - DAY
    gone = [
        rows.event(sessions, f"e{i}", created=old, states=("delivered", "delivered"))
        for i in range(7)
    ]
    rows.event(sessions, "dead", created=old, states=("dead",))
    assert purge(db, Retention(batch_size=3), now=NOW).counts["outbox events"] == 7
    assert _events_left(sessions) == {rows.event_uuid("dead")}
    assert all(_deliveries_of(sessions, i) == [] for i in gone)


def test_an_event_picked_on_a_stale_read_keeps_every_row_while_one_is_sending(db, sessions):
    """The batch was read before a deliver process gave the event a new endpoint's row
    (here: a pick that ignores the rows at all): the deletes ask again, and the event keeps
    its delivered row too (without it, that endpoint would be sent the event again)."""
    old = NOW - EVENT_KEPT - DAY
    sending = rows.event(sessions, "sending", created=old, states=("delivered", "pending"))
    done = rows.event(sessions, "done", created=old, states=("delivered",))
    stale = OutboxEvent.id.is_not(None)  # every event, whatever its rows
    (kind,) = [k for k in KINDS if k.model is OutboxEvent]
    assert kind.delete is not None
    with db.connect() as conn:
        assert kind.delete(conn, kind, stale, 10) == 1
    assert _events_left(sessions) == {rows.event_uuid("sending")}
    assert _deliveries_of(sessions, sending) == ["delivered", "pending"]
    assert _deliveries_of(sessions, done) == []


def test_after_a_purge_the_queue_neither_sends_again_nor_holds_back(db, sessions) -> None:
    """Through the deliver process's own statements: a purged event is not fanned out
    again, and a later event of the same student is still due (deleted rows hold nothing
    back)."""
    old = NOW - EVENT_KEPT - DAY
    with sessions.begin() as session:
        outbox.record(session, events.ACTIVATED, "dc12345", at=old)
    with db.begin() as conn:
        assert queue.fan_out(conn, ["lms"], old) == 1
    with sessions.begin() as session:
        (claimed,) = queue.claim(session, "lms", "a", old, timedelta(minutes=5), 20)
        queue.delivered(session, claimed.delivery_id, old)
    with sessions.begin() as session:
        later = outbox.record(session, events.CONTACT_VERIFIED, "dc12345", at=NOW)
    assert purge(db, Retention(), now=NOW).counts["outbox events"] == 1
    with db.begin() as conn:
        assert queue.fan_out(conn, ["lms"], NOW) == 1  # the later one only
    with sessions.begin() as session:
        due = queue.claim(session, "lms", "a", NOW, timedelta(minutes=5), 20)
    assert [c.event_uuid for c in due] == [later]


# -- the run as a whole ----------------------------------------------------------------------------


def test_dry_run_counts_what_a_run_deletes_and_deletes_nothing(db, sessions) -> None:
    rows.arrange_everything(sessions, n=3)
    before = rows.row_counts(sessions)
    dry = purge(db, Retention(), dry_run=True, now=NOW)
    assert dry.dry_run and rows.row_counts(sessions) == before
    assert dry.counts == {k.name: 3 for k in KINDS}
    real = purge(db, Retention(), now=NOW)
    assert real.counts == dry.counts
    assert rows.row_counts(sessions) == {k: before[k] - 3 for k in before}


def test_a_second_run_deletes_nothing(db, sessions) -> None:
    rows.arrange_everything(sessions, n=2)
    assert sum(purge(db, Retention(), now=NOW).counts.values()) == 2 * len(KINDS)
    kept = rows.row_counts(sessions)
    assert purge(db, Retention(), now=NOW).counts == {k.name: 0 for k in KINDS}
    assert rows.row_counts(sessions) == kept


def test_batches_delete_everything_due(db, sessions) -> None:
    rows.arrange_everything(sessions, n=10)
    counts = purge(db, Retention(batch_size=3), now=NOW).counts
    assert counts == {k.name: 10 for k in KINDS}
    assert rows.row_counts(sessions) == {k.name: 10 for k in KINDS}


def test_two_purges_at_once_both_finish_with_the_right_end_state(tmp_path, db, sessions) -> None:
    rows.arrange_everything(sessions, n=60)
    url = f"sqlite:///{tmp_path}/purge.db"
    results: list[dict[str, int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:  # each its own engine, as two replicas would have
            results.append(purge(make_engine(url), Retention(batch_size=7), now=NOW).counts)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and len(results) == 2
    for kind in KINDS:
        assert results[0][kind.name] + results[1][kind.name] == 60
    assert rows.row_counts(sessions) == {k.name: 60 for k in KINDS}


# -- settings and the command --------------------------------------------------------------------


def test_retention_settings_defaults_and_errors() -> None:
    assert Retention.from_env({}) == Retention(
        audit_days=730,
        code_days=180,
        lockout_reset_days=30,
        event_days=30,
        grace=timedelta(minutes=15),
        batch_size=1000,
    )
    custom = Retention.from_env(
        {
            "UMPASS_AUDIT_RETENTION_DAYS": "0",
            "UMPASS_CODE_RETENTION_DAYS": "90",
            "UMPASS_LOCKOUT_RESET_DAYS": "7",
            "UMPASS_EVENT_RETENTION_DAYS": "0",
            "UMPASS_PURGE_GRACE_MINUTES": "0",
            "UMPASS_PURGE_BATCH": "500",
        }
    )
    assert (custom.audit_days, custom.code_days, custom.lockout_reset_days) == (0, 90, 7)
    assert custom.event_days == 0
    assert (custom.grace, custom.batch_size) == (timedelta(0), 500)
    for name, value in (
        ("UMPASS_AUDIT_RETENTION_DAYS", "two years"),
        ("UMPASS_LOCKOUT_RESET_DAYS", "0"),
        ("UMPASS_EVENT_RETENTION_DAYS", "-1"),
        ("UMPASS_PURGE_BATCH", "-5"),
    ):
        with pytest.raises(ConfigError, match=name):
            Retention.from_env({name: value})


@pytest.fixture
def command_env(monkeypatch, tmp_path) -> str:
    url = f"sqlite:///{tmp_path}/purge.db"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("UMPASS_KC_CLIENT_SECRET", "x")
    monkeypatch.setenv("UMPASS_TESTING", "1")
    for name in ("UMPASS_AUDIT_RETENTION_DAYS", "UMPASS_PURGE_GRACE_MINUTES"):
        monkeypatch.delenv(name, raising=False)
    return url


def test_command_prints_counts_per_kind(command_env, db, sessions, capsys) -> None:
    rows.arrange_everything(sessions, n=2)  # "now" is the real time: everything old is due
    before = rows.row_counts(sessions)
    assert cli.main(["purge", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "Would delete (dry run)" in out and "audit events" in out
    assert rows.row_counts(sessions) == before
    assert cli.main(["purge"]) == 0
    out = capsys.readouterr().out
    assert "Deleted" in out and "identify lockouts" in out
    assert rows.row_counts(sessions) != before


def test_command_says_in_one_line_when_the_database_is_down(command_env, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://umpass@127.0.0.1:9/umpass")
    assert cli.main(["purge"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot purge the database (OperationalError)")
    assert err.count("\n") == 1


def test_command_refuses_a_bad_setting(command_env, monkeypatch, capsys) -> None:
    monkeypatch.setenv("UMPASS_PURGE_GRACE_MINUTES", "soon")
    assert cli.main(["purge"]) == 2
    assert "UMPASS_PURGE_GRACE_MINUTES" in capsys.readouterr().err
