"""The policy versions a student must accept now, as the service reads them."""

from __future__ import annotations

from provider.policies import Policy
from provider.policies.published import current
from provider.services import Services


def current_policies(svc: Services) -> tuple[Policy, ...]:
    with svc.reads() as db:
        return current(db)
