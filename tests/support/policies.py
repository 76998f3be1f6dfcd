"""The policy versions a student must accept now, as the service reads them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import delete

from provider.policies import Policy, accepted_record, documents
from provider.policies.published import current, publish
from provider.services import Services
from provider.storage.models import PolicyPublication


def current_policies(svc: Services) -> tuple[Policy, ...]:
    with svc.reads() as db:
        return current(db)


def accepted_now(svc: Services) -> list[str]:
    """An account's `accepted_policies` for a student who accepted every current version
    (one that lacks one is stopped by the realm's policy gate at browser sign-in)."""
    return [accepted_record(p, "2026-12-01T09:00:00Z") for p in current_policies(svc)]


def accepted_first_versions() -> list[str]:
    """`accepted_now` for a test that has no database at hand: with nothing published (as
    between tests: each removes what it published), each policy's first version is current."""
    return [accepted_record(v[0], "2026-12-01T09:00:00Z") for v in documents().values()]


@contextmanager
def published(svc: Services, policy_id: str, version: str) -> Iterator[None]:
    """`version` current while the block runs; the publication removed afterwards (the
    database is shared by the session's tests), whether the test passed or failed."""
    publish(svc.sessions, policy_id, version, "test")
    with unpublished_after(svc, policy_id, version):
        yield


@contextmanager
def unpublished_after(svc: Services, policy_id: str, version: str) -> Iterator[None]:
    """For a test that publishes `version` itself (through the console): the publication
    is removed when the block ends, whether the test passed or failed."""
    try:
        yield
    finally:
        with svc.sessions.begin() as db:
            db.execute(
                delete(PolicyPublication).where(
                    PolicyPublication.policy_id == policy_id, PolicyPublication.version == version
                )
            )
