"""What the recovery flow holds between requests, stored as JSON in the flow's row.

A flow is stored for every start, whether or not the account can be recovered here: the
later pages must answer alike for both, so what differs (`keycloak_id` None, a decoy
contact) lives only on the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from provider.flows.state import Channel

Outcome = Literal["unlocked", "reset"]


@dataclass
class RecoveryData:
    channel: Channel
    lock_key: str  # the wrong-try counter's key, shared by every recovery flow of the account
    budget_key: str  # the per-account send budget's key (a keyed hash of what was typed)
    contact: str  # keyed hash of the contact the code went to (a decoy's when nothing was sent)
    keycloak_id: str | None = None  # None: nothing was sent, nothing can be recovered
    # The recoverable account's own counter (`counters`), whatever way it was typed.
    account_lock_key: str | None = None
    proven: bool = False  # the code was right
    birth_date_proven: bool = False
    claim: str | None = None  # ISO time a final submit began writing (until the end page)
    # What this flow wrote to Keycloak so far (a retry goes on from there).
    outcome: Outcome | None = None
    password_set: bool = False
    # The password last sent, as a keyed digest, and Keycloak's stamp of the password it
    # replaces: a retry with the same password after a lost answer reads the stamp again
    # to tell whether that write landed (provider/recovery/writes.py).
    password_digest: str | None = None
    password_stamp: int | None = None
    signed_out: bool = False
    told: bool = False

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v not in (None, False)}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RecoveryData:
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        if known.get("channel") not in ("email", "phone"):
            raise ValueError("not a recovery flow")
        return cls(**known)
