"""The stored results of `umpass realm-check`: written by the command, read by the web
service (page, JSON, gauges), which never reads the realm itself.

What the web shows is the latest stored result and how old it is: older than
`UMPASS_REALM_HEALTH_STALE_AFTER` minutes it is red, "not checked since"; with none at
all, "never checked". Nothing here imports what reads Keycloak.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from provider.storage.models import RealmHealthCheck

# The history the command keeps: the newest rows, none older than the days (a timer every
# 5 minutes writes 288 a day; the newest is always kept).
KEEP_ROWS = 200
KEEP_DAYS = 30

OK, NEEDS_REPAIR, UNREADABLE, STALE, NEVER = (
    "ok",
    "needs-repair",
    "unreadable",
    "stale",
    "never-checked",
)


def latest(db: Session) -> RealmHealthCheck | None:
    return db.scalars(
        select(RealmHealthCheck)
        .order_by(RealmHealthCheck.checked_at.desc(), RealmHealthCheck.id.desc())
        .limit(1)
    ).first()


def prune(
    db: Session, now: datetime, *, keep_rows: int = KEEP_ROWS, keep_days: int = KEEP_DAYS
) -> int:
    """Delete beyond the newest `keep_rows` and older than `keep_days` (never the newest)."""
    newest = (
        select(RealmHealthCheck.id)
        .order_by(RealmHealthCheck.checked_at.desc(), RealmHealthCheck.id.desc())
        .limit(max(keep_rows, 1))
    )
    kept = set(db.scalars(newest))
    top = latest(db)
    old = RealmHealthCheck.checked_at < now - timedelta(days=keep_days)
    doomed = select(RealmHealthCheck.id).where(
        (RealmHealthCheck.id.not_in(kept) if kept else RealmHealthCheck.id.is_not(None)) | old
    )
    ids = [i for i in db.scalars(doomed) if top is None or i != top.id]
    if ids:
        db.execute(delete(RealmHealthCheck).where(RealmHealthCheck.id.in_(ids)))
    return len(ids)


@dataclass(frozen=True)
class HealthStatus:
    """What the page, the JSON and the gauges show: the latest result and its age."""

    realm: str
    now: datetime
    stale_after: timedelta
    row: RealmHealthCheck | None

    @property
    def checked_at(self) -> datetime | None:
        return self.row.checked_at if self.row else None

    @property
    def stale(self) -> bool:
        return self.row is not None and self.now - self.row.checked_at > self.stale_after

    @property
    def status(self) -> str:
        if self.row is None:
            return NEVER
        if self.stale:
            return STALE
        if not self.row.readable:
            return UNREADABLE
        return OK if self.row.healthy else NEEDS_REPAIR

    @property
    def up(self) -> bool:
        """A fresh result of a realm that could be read."""
        return self.status in (OK, NEEDS_REPAIR)

    @property
    def result(self) -> dict[str, Any]:
        return self.row.result if self.row else {}

    def as_json(self) -> dict[str, Any]:
        """The stored result (English, as the command wrote it) and its freshness."""
        age = (self.now - self.row.checked_at).total_seconds() if self.row else None
        base: dict[str, Any] = {
            "realm": self.realm,
            "error": None,
            "drift_items": None,
            "failed_checks": None,
            "checks": [],
            "drift": [],
            **self.result,
        }
        message = {
            NEVER: "Never checked: run umpass realm-check",
            STALE: f"Not checked since {self.checked_at.isoformat() if self.checked_at else ''}",
        }.get(self.status)
        return {
            **base,
            "status": self.status,
            "healthy": self.status == OK,
            "stale": self.stale,
            "checked_at": self.checked_at.isoformat() if self.checked_at else None,
            "age_seconds": None if age is None else round(age),
            "stale_after_seconds": round(self.stale_after.total_seconds()),
            "message": message,
        }


def status(db: Session, realm: str, now: datetime, stale_after_minutes: float) -> HealthStatus:
    return HealthStatus(realm, now, timedelta(minutes=stale_after_minutes), latest(db))
