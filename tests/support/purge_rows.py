"""Rows of every kind `umpass purge` looks at, for its SQLite and PostgreSQL tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from provider.purge import KINDS
from provider.storage.models import (
    ActivationCode,
    AuditEvent,
    Base,
    ContactSend,
    ContactVerification,
    Flow,
    IdentifyLockout,
    OidcAccessToken,
    OidcAuthorizationCode,
    OutboxDelivery,
    OutboxEvent,
    PolicyReview,
    StaffSession,
    Student,
    UsedChallenge,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def add(sessions: sessionmaker[Session], *rows: Base) -> None:
    with sessions.begin() as session:
        session.add_all(rows)


def ids(sessions: sessionmaker[Session], column: Any) -> set[Any]:
    with sessions() as session:
        return set(session.scalars(select(column)))


def flow(key: str, *, created: datetime, expires: datetime) -> Flow:
    return Flow(
        id_hash=key,
        user_id="dc12345",
        step="policies",
        state={"first_name": "Ana"},
        created_at=created,
        updated_at=created,
        expires_at=expires,
    )


def verification(flow_key: str) -> ContactVerification:
    return ContactVerification(
        flow_key=flow_key,
        channel="phone",
        contact_hash=f"contact-of-{flow_key}",
        failures=2,
        created_at=NOW - timedelta(hours=1),
    )


def oidc_code(key: str, expires: datetime) -> OidcAuthorizationCode:
    return OidcAuthorizationCode(
        code_hash=key,
        client_id="keycloak-broker",
        keycloak_id="kc",
        username="dc12345",
        redirect_uri="https://sso.example.edu/cb",
        scope="openid",
        nonce=f"nonce-{key}",
        auth_time=0,
        expires_at=expires,
    )


def token(key: str, expires: datetime) -> OidcAccessToken:
    return OidcAccessToken(
        token_hash=key,
        code_hash="c",
        client_id="keycloak-broker",
        keycloak_id="kc",
        username="dc12345",
        scope="openid",
        expires_at=expires,
    )


def staff_session(key: str, expires: datetime) -> StaffSession:
    return StaffSession(
        id_hash=key,
        username="desk1",
        roles=["activation-helpdesk"],
        refresh_token="r",
        created_at=expires - timedelta(hours=2),
        expires_at=expires,
    )


def lockout(
    key: str, *, updated: datetime, failures: int = 0, locks: int = 0, until: datetime | None = None
) -> IdentifyLockout:
    return IdentifyLockout(
        user_id=key, failures=failures, lock_count=locks, locked_until=until, updated_at=updated
    )


def code(user: str, n: int, *, issued: datetime, **status: datetime) -> ActivationCode:
    return ActivationCode(
        user_id=user,
        code_hash=f"{user}-{n}",
        issued_at=issued,
        expires_at=status.pop("expires", issued + timedelta(days=30)),
        **{f"{k}_at": v for k, v in status.items()},
    )


def student(user: str) -> Student:
    return Student(user_id=user, dob_hash="d", id_last4_hash="i", intake="2026-fall")


def review(ticket_id: str, expires: datetime) -> PolicyReview:
    return PolicyReview(
        ticket_id=ticket_id, account_id="a", browser="b", callback="c", expires_at=expires
    )


def event(
    sessions: sessionmaker[Session], name: str, *, created: datetime, states: tuple[str, ...] = ()
) -> int:
    """An outbox event (its uuid derived from `name`) with one delivery row per state in
    `states`, each at its own endpoint; its id. Besides the stored states (pending,
    delivered, dead): "leased" (pending, a deliver process sending it now) and "retrying"
    (pending, failed 3 times, next try later)."""
    with sessions.begin() as session:
        row = OutboxEvent(
            uuid=event_uuid(name),
            type="student.activated",
            user_id="dc12345",
            payload={"user_id": "dc12345", "at": created.isoformat()},
            created_at=created,
        )
        session.add(row)
        session.flush()
        for n, state in enumerate(states):
            leased, retrying = state == "leased", state == "retrying"
            session.add(
                OutboxDelivery(
                    event_id=row.id,
                    endpoint=f"endpoint-{n}",
                    user_id="dc12345",
                    state="pending" if leased or retrying else state,
                    attempts={"dead": 8, "retrying": 3}.get(state, 0),
                    next_attempt_at=NOW + timedelta(hours=1) if retrying else created,
                    last_error="HTTP 503" if retrying or state == "dead" else None,
                    lease_until=NOW + timedelta(minutes=5) if leased else None,
                    lease_owner="deliver-a" if leased else None,
                    delivered_at=created if state == "delivered" else None,
                )
            )
        return row.id


def event_uuid(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def arrange_everything(sessions: sessionmaker[Session], n: int = 1) -> None:
    old = NOW - timedelta(days=1000)
    for i in range(n):
        add(
            sessions,
            flow(f"gone{i}", created=old, expires=old),
            flow(f"live{i}", created=NOW, expires=NOW + timedelta(minutes=30)),
            verification(f"gone{i}"),
            verification(f"live{i}"),
            ContactSend(contact_hash=f"c{i}", flow_key="f", at=old),
            ContactSend(contact_hash=f"c{i}", flow_key="f", at=NOW),
            oidc_code(f"gone{i}", old),
            oidc_code(f"live{i}", NOW + timedelta(seconds=60)),
            token(f"gone{i}", old),
            token(f"live{i}", NOW + timedelta(minutes=5)),
            staff_session(f"gone{i}", old),
            staff_session(f"live{i}", NOW + timedelta(hours=1)),
            lockout(f"gone{i}", updated=old, locks=2),
            lockout(f"kept{i}", updated=NOW, failures=1),
            UsedChallenge(nonce=f"gone{i}", expires_at=old),
            UsedChallenge(nonce=f"live{i}", expires_at=NOW + timedelta(minutes=20)),
            review(f"gone{i}", old),
            review(f"live{i}", NOW + timedelta(minutes=10)),
            student(f"s{i}"),
        )
        add(
            sessions,
            code(f"s{i}", 1, issued=old, revoked=old),
            code(f"s{i}", 2, issued=NOW),
            AuditEvent(at=old, actor="system", action="code.issued", subject=f"s{i}"),
            AuditEvent(at=NOW, actor="system", action="code.issued", subject=f"s{i}"),
        )
        event(sessions, f"gone{i}", created=old, states=("delivered", "delivered"))
        event(sessions, f"live{i}", created=NOW, states=("delivered",))


def row_counts(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as session:
        return {
            k.name: session.scalar(select(func.count()).select_from(k.model)) or 0 for k in KINDS
        }
