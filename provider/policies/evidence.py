"""Evidence of acceptance: who accepted which version, when; and the counts for audits.

Written by the service in the transaction that records the acceptance as done (at
activation: with the code consumed, after the account holds the same ``id@version:time``
records), one row per student and version, and an audit event each. Writing it again is
harmless: a version a student already accepted keeps its first time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Insert, and_, func, select
from sqlalchemy.orm import Session

from provider import audit
from provider.policies import Acceptance, Policy, parse_record
from provider.policies.published import current_versions
from provider.storage.engine import insert_unless_present
from provider.storage.models import ActivationCode, PolicyAcceptance, Student

ACCEPTED = "policy.accepted"
_TABLE = PolicyAcceptance.__table__


def _when(acceptance: Acceptance) -> datetime:
    return datetime.fromisoformat(acceptance.at.replace("Z", "+00:00"))


def record(conn: Connection, user_id: str, records: Iterable[str]) -> list[Acceptance]:
    """Keep each ``id@version:time`` of `records` not kept yet for `user_id`, audited;
    returns what was new. Two statements whatever the number of policies (it runs in
    every activation's last transaction): the rows inserted unless kept already, and
    their audit events."""
    wanted = {(a.policy_id, a.version): a for a in map(parse_record, records) if a is not None}
    if not wanted:
        return []
    rows = [
        {"user_id": user_id, "policy_id": p, "version": v, "accepted_at": _when(a)}
        for (p, v), a in wanted.items()
    ]
    inserted = conn.execute(_insert_new(conn, rows)).all()
    new = [wanted[(row.policy_id, row.version)] for row in inserted]
    audit.record_each(
        conn,
        audit.STUDENT,
        ACCEPTED,
        user_id,
        [{"policy": a.policy_id, "version": a.version, "at": a.at} for a in new],
    )
    return new


def _insert_new(conn: Connection, rows: list[dict[str, object]]) -> Insert:
    """INSERT … ON CONFLICT DO NOTHING RETURNING: a version kept already keeps its first
    time (a retried activation writes the same records again)."""
    return (
        insert_unless_present(conn.dialect.name, _TABLE, "user_id", "policy_id", "version")
        .values(rows)
        .returning(_TABLE.c.policy_id, _TABLE.c.version)
    )


@dataclass(frozen=True)
class VersionCount:
    policy: Policy
    current: bool
    published_at: datetime | None
    accepted: int
    # Active students who have not accepted it (the current version only; None for others).
    still_due: int | None


def counts(db: Session, documents: dict[str, tuple[Policy, ...]]) -> list[VersionCount]:
    """Every version of every policy, newest first within a policy."""
    accepted = {
        (policy_id, version): n
        for policy_id, version, n in db.execute(
            select(_TABLE.c.policy_id, _TABLE.c.version, func.count()).group_by(
                _TABLE.c.policy_id, _TABLE.c.version
            )
        )
    }
    now = current_versions(db)
    out: list[VersionCount] = []
    for policy_id, versions in documents.items():
        current = now[policy_id]
        for policy in reversed(versions):
            is_current = policy.version == current.policy.version
            n = accepted.get((policy_id, policy.version), 0)
            out.append(
                VersionCount(
                    policy=policy,
                    current=is_current,
                    published_at=current.published_at if is_current else None,
                    accepted=n,
                    still_due=_due(db, policy) if is_current else None,
                )
            )
    return out


def _due(db: Session, policy: Policy) -> int:
    """Activated students without an acceptance of `policy`'s version."""
    has_it = select(_TABLE.c.user_id).where(
        and_(_TABLE.c.policy_id == policy.id, _TABLE.c.version == policy.version)
    )
    query = (
        select(func.count(func.distinct(Student.user_id)))
        .join(ActivationCode, ActivationCode.user_id == Student.user_id)
        .where(ActivationCode.used_at.is_not(None), Student.user_id.not_in(has_it))
    )
    return int(db.scalar(query) or 0)


def acceptances(db: Session, policy_id: str, version: str) -> list[PolicyAcceptance]:
    """Who accepted this version and when, oldest first (the CSV export)."""
    query = (
        select(PolicyAcceptance)
        .where(PolicyAcceptance.policy_id == policy_id, PolicyAcceptance.version == version)
        .order_by(PolicyAcceptance.accepted_at, PolicyAcceptance.user_id)
    )
    return list(db.scalars(query))
