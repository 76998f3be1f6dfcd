"""Which version of each policy is current, and publishing a new one.

A version on disk is a document; publishing it (`umpass policies publish`, or the admin
page) adds a row to `policy_publications`, audited, and from then on it is the version
every student must accept: at activation, and at the next sign-in for students who
accepted an earlier one. A policy never published is current at its first version (what
activation showed before versions could be published).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, lambda_stmt, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.lambdas import StatementLambdaElement

from provider import audit
from provider.policies import Policy, documents, find
from provider.storage.models import PolicyPublication, utcnow

PUBLISHED = "policy.published"


class PublishRefused(Exception):
    """The version cannot be published; the message says why, in plain words."""


@dataclass(frozen=True)
class Publication:
    policy: Policy
    published_at: datetime | None  # None: the first version, current without publishing
    published_by: str | None


def current_versions(db: Session) -> dict[str, Publication]:
    """Each policy's current version, by policy id (in the documents' order)."""
    latest: dict[str, PolicyPublication] = {}
    for row in db.scalars(select(PolicyPublication).order_by(PolicyPublication.id)):
        latest[row.policy_id] = row  # a later row supersedes
    out: dict[str, Publication] = {}
    for policy_id, versions in documents().items():
        row = latest.get(policy_id)
        policy = find(policy_id, row.version) if row else None
        if row is None or policy is None:
            out[policy_id] = Publication(versions[0], None, None)
        else:
            out[policy_id] = Publication(policy, row.published_at, row.published_by)
    return out


def _published_versions() -> StatementLambdaElement:
    return lambda_stmt(
        lambda: select(PolicyPublication.policy_id, PolicyPublication.version).order_by(
            PolicyPublication.id
        )
    )


def current(db: Session | Connection) -> tuple[Policy, ...]:
    """The versions a student must have accepted now. Read by the activation's later
    steps (see PoliciesStep.holds): one Core statement, no ORM objects."""
    latest = {row.policy_id: row.version for row in db.execute(_published_versions())}
    out: list[Policy] = []
    for policy_id, versions in documents().items():
        version = latest.get(policy_id)
        policy = find(policy_id, version) if version is not None else None
        out.append(policy or versions[0])
    return tuple(out)


def publish(
    sessions: sessionmaker[Session], policy_id: str, version: str, actor: str
) -> Publication:
    """Make `version` current, audited in the same transaction. Only a version newer than
    the current one: going back would ask everyone to accept an older text again."""
    policy = find(policy_id, version)
    if policy is None:
        known = ", ".join(p.key for ps in documents().values() for p in ps)
        raise PublishRefused(f"there is no {policy_id}@{version} (the versions are: {known})")
    now = utcnow()
    try:
        with sessions.begin() as db:
            now_current = current_versions(db)[policy_id].policy
            if version <= now_current.version:
                raise PublishRefused(
                    f"{policy_id}@{now_current.version} is current: publish a newer version"
                )
            db.add(
                PolicyPublication(
                    policy_id=policy_id, version=version, published_at=now, published_by=actor
                )
            )
            audit.record(db, actor, PUBLISHED, None, policy=policy_id, version=version)
    except IntegrityError:
        # Two publishers at once: the other one's row stands, this one wrote nothing.
        raise PublishRefused(f"{policy.key} was published meanwhile") from None
    return Publication(policy, now, actor)


def history(db: Session) -> list[PolicyPublication]:
    return list(db.scalars(select(PolicyPublication).order_by(PolicyPublication.id)))
