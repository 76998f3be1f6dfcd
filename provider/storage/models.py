"""Tables of the service's database (SQLAlchemy 2 declarative models).

Schema changes go through Alembic (provider/storage/migrations); `umpass db-upgrade`
applies them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on SQLite and PostgreSQL alike."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime,
        dict[str, Any]: JSON,
    }


class Student(Base):
    """Proofing data for one user ID, as keyed hashes only."""

    __tablename__ = "students"

    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    dob_hash: Mapped[str] = mapped_column(String(64))
    id_last4_hash: Mapped[str] = mapped_column(String(64))
    intake: Mapped[str | None] = mapped_column(String(64), index=True)
    language: Mapped[str | None] = mapped_column(String(8), default=None)  # for letters
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The Keycloak account's id when known (a hint, never trusted alone): identify reads
    # the account by id, where a search by username costs Keycloak ~20x more CPU under
    # fine-grained admin permissions. Checked against the username on every read.
    keycloak_id: Mapped[str | None] = mapped_column(String(36), default=None)


class ActivationCode(Base):
    """One issued activation code (its HMAC), valid until used, revoked or expired."""

    __tablename__ = "activation_codes"
    # At most one code per student that is neither used nor revoked: two issuers racing
    # (help desk and a batch) cannot both leave a live code; the second one fails.
    __table_args__ = (
        Index(
            "ux_activation_codes_one_open",
            "user_id",
            unique=True,
            sqlite_where=text("used_at IS NULL AND revoked_at IS NULL"),
            postgresql_where=text("used_at IS NULL AND revoked_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("students.user_id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    # Which flow is activating with this code right now (HMAC of its id), and since when:
    # one flow at a time, across threads, processes and replicas.
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None]


class IdentifyLockout(Base):
    """Consecutive identify failures for a typed user ID, whether or not it exists."""

    __tablename__ = "identify_lockouts"

    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    lock_count: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None] = mapped_column(index=True)
    # When the latest lock began: the help desk's list and its mass-lockout banner.
    locked_at: Mapped[datetime | None] = mapped_column(index=True, default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Flow(Base):
    """Server-side state of one activation flow, keyed by the HMAC of its cookie id."""

    __tablename__ = "flows"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(String(32), index=True)
    step: Mapped[str] = mapped_column(String(32))
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    version: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class AuditEvent(Base):
    """Who did what to whom, when; never a secret or a proofing value."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_subject_at", "subject", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ContactVerification(Base):
    """Proving one new or unconfirmed contact in one flow: the current code (HMAC, bound
    to this row) and the wrong tries, which a resend does not reset."""

    __tablename__ = "contact_verifications"
    __table_args__ = (UniqueConstraint("flow_key", "channel", "contact_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    flow_key: Mapped[str] = mapped_column(String(64), index=True)
    channel: Mapped[str] = mapped_column(String(8))  # email | phone
    contact_hash: Mapped[str] = mapped_column(String(64))
    code_hash: Mapped[str | None] = mapped_column(String(64))
    code_expires_at: Mapped[datetime | None]
    failures: Mapped[int] = mapped_column(default=0)
    verified_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ContactSend(Base):
    """One code sent, for the throttles per contact, per flow and per student."""

    __tablename__ = "contact_sends"
    __table_args__ = (
        Index("ix_contact_sends_contact_at", "contact_hash", "at"),
        Index("ix_contact_sends_flow_at", "flow_key", "at"),
        Index("ix_contact_sends_user_at", "user_id", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    contact_hash: Mapped[str] = mapped_column(String(64))
    flow_key: Mapped[str] = mapped_column(String(64))
    # The student's user ID: their cap spans every flow they open (None before 0008).
    user_id: Mapped[str | None] = mapped_column(String(32), default=None)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class SendDay(Base):
    """One UTC day's counts: text messages sent (against the daily budget) and code sends
    refused by the per-student cap and by the budget. Counts only, no personal data."""

    __tablename__ = "send_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    sms_sent: Mapped[int] = mapped_column(default=0)
    refused_student_cap: Mapped[int] = mapped_column(default=0)
    refused_sms_budget: Mapped[int] = mapped_column(default=0)


class OidcAuthorizationCode(Base):
    """A code this service issued to the realm's broker: single use, short-lived, and
    stored only as its HMAC."""

    __tablename__ = "oidc_authorization_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    keycloak_id: Mapped[str] = mapped_column(String(64))
    username: Mapped[str] = mapped_column(String(64))
    redirect_uri: Mapped[str] = mapped_column(String(512))
    scope: Mapped[str] = mapped_column(String(256))
    nonce: Mapped[str | None] = mapped_column(String(256))
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(String(16))
    auth_time: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None] = mapped_column(default=None)


class OidcAccessToken(Base):
    """An access token for the userinfo endpoint, stored only as its HMAC."""

    __tablename__ = "oidc_access_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), index=True)  # revoked if it is replayed
    client_id: Mapped[str] = mapped_column(String(64))
    keycloak_id: Mapped[str] = mapped_column(String(64))
    username: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(256))
    expires_at: Mapped[datetime] = mapped_column(index=True)


class StaffSession(Base):
    """A signed-in help-desk staff member, held server-side: the browser carries only a
    random id (stored here as its SHA-256), so signing out ends it everywhere at once.
    The realm's refresh token lets every request re-read the roles, so a role removed (or
    a realm session ended) in Keycloak takes effect on the next request."""

    __tablename__ = "staff_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(String(255))
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    refresh_token: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class UsedChallenge(Base):
    """A proof-of-work challenge already redeemed (its signed random nonce), kept until the
    challenge expires so that a solved one cannot be replayed."""

    __tablename__ = "used_challenges"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class PolicyPublication(Base):
    """A policy version made current: from then on every student must accept it. Rows are
    only added (a later version supersedes), so the history of publishing is kept."""

    __tablename__ = "policy_publications"
    __table_args__ = (UniqueConstraint("policy_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    policy_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(16))
    published_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_by: Mapped[str] = mapped_column(String(255))


class PolicyAcceptance(Base):
    """Evidence: a student accepted one version of one policy, at that time (the same
    ``id@version:time`` the account holds). Kept as long as the account's record: not
    purged with the audit log, since an audit of who accepted what may come years later."""

    __tablename__ = "policy_acceptances"
    __table_args__ = (
        UniqueConstraint("user_id", "policy_id", "version"),
        Index("ix_policy_acceptances_version", "policy_id", "version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(32))
    policy_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(16))
    accepted_at: Mapped[datetime] = mapped_column()


class PolicyReview(Base):
    """One ticket of Keycloak's policy gate (provider/policies/review_ticket.py), from the
    first time a browser brought it: the browser it is bound to (a keyed hash of a secret
    in that browser's session, so a copied link is refused elsewhere), and its one answer
    (`answer` set with compare-and-set). `umpass purge` removes it a day after expiry."""

    __tablename__ = "policy_reviews"

    ticket_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(64))
    browser: Mapped[str] = mapped_column(String(64))
    callback: Mapped[str] = mapped_column(String(2048))
    expires_at: Mapped[datetime] = mapped_column(index=True)
    # None until answered: "accepting" while the account is written, then "accepted";
    # or "declined".
    answer: Mapped[str | None] = mapped_column(String(16))
    answered_at: Mapped[datetime | None] = mapped_column()


class RealmHealthCheck(Base):
    """One run of `umpass realm-check` (provider/realm_health): what it found, stored so
    the web service shows it without ever reading the realm. `told` is what counts as
    already alerted after this run (the next run mails only what is not in it). The
    command keeps a bounded history (realm_health/stored.py prunes)."""

    __tablename__ = "realm_health_checks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    checked_at: Mapped[datetime] = mapped_column(index=True)
    realm: Mapped[str] = mapped_column(String(255))
    readable: Mapped[bool] = mapped_column(Boolean)  # False: the realm could not be read
    healthy: Mapped[bool] = mapped_column(Boolean)
    drift_items: Mapped[int] = mapped_column(Integer)
    failed_checks: Mapped[int] = mapped_column(Integer)
    problems: Mapped[list[str]] = mapped_column(JSON)
    told: Mapped[list[str]] = mapped_column(JSON)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)


class OutboxEvent(Base):
    """An event for downstream systems (provider/events), written in the transaction of the
    change it reports: both are kept, or neither. Never a secret in `payload`. `id` orders a
    student's events; `uuid` is the idempotency key receivers see (webhook-id)."""

    __tablename__ = "outbox_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(32), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class OutboxDelivery(Base):
    """One event to one configured endpoint: made by `umpass deliver` when it first sees the
    event (the web's write stays one INSERT, and an endpoint added later gets its own rows),
    then retried with backoff until delivered or dead (after the endpoint's maximum tries).
    `lease_until`/`lease_owner`: which deliver process is sending it now."""

    __tablename__ = "outbox_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "endpoint"),
        # The claim's order check: a student's earlier, undelivered events at this endpoint.
        Index("ix_outbox_deliveries_order", "endpoint", "user_id", "event_id"),
        Index("ix_outbox_deliveries_due", "endpoint", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("outbox_events.id"))
    endpoint: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(32))  # the event's, for the order check
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending|delivered|dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    lease_owner: Mapped[str | None] = mapped_column(String(64), default=None)
    last_error: Mapped[str | None] = mapped_column(String(255), default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
