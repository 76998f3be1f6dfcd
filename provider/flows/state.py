"""What the activation flow holds between requests, as named, typed fields.

Stored as JSON in the flow's row. The JSON keys are the ones the flow used before these
types existed, so a flow stored by an older replica resumes on a newer one (a rolling
upgrade never sends a student back to the start).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Channel = Literal["email", "phone"]
CHANNELS: tuple[Channel, ...] = ("email", "phone")


@dataclass
class OnRecord:
    """A contact Keycloak holds for the student, as the pages may show it."""

    masked: str | None
    verified: bool = False


@dataclass
class PendingContact:
    """A contact the student chose on the contacts step: to prove, or (optional) that may
    be proven."""

    value: str | None  # the new one typed; None: the one on record (read when needed)
    shown: str  # what the page shows: the value typed, or the mask of the one on record
    replaces: bool  # a contact on record is replaced (its holder gets a notice)
    sent: bool = False
    verified: bool = False
    # Kept from the Registry and, by the university's choice, provable but not required:
    # left unproven, it is never written and stays unverified in Keycloak.
    optional: bool = False


@dataclass
class ActivationData:
    """Everything the activation's steps collected for one identified student."""

    code_id: int
    keycloak_id: str
    # Masked contacts and the words a password must not be built from, so the later steps
    # need no Keycloak reads; dropped once the account is active.
    on_record: dict[Channel, OnRecord] = field(default_factory=dict)
    hints: list[str] = field(default_factory=list)
    accepted_policies: list[str] = field(default_factory=list)  # ``id@version:time``
    pending: dict[Channel, PendingContact] | None = None
    # Replaced contacts not told yet, as Keycloak held them before the step wrote.
    owed: dict[Channel, str] = field(default_factory=dict)
    # Contacts this step replaces with a different value (set with `owed`, kept after the
    # notice is sent): their `student.contact_verified` events say so, on a retry too.
    replaced: list[Channel] = field(default_factory=list)
    claim: str | None = None  # ISO time a password submit began activating
    # This flow's own write made the account active (the sign-in door asserts nothing
    # without it; older replicas read the same key).
    activated: bool = False
    # The request of whoever sent the student here (a sign-in), carried unread.
    caller: dict[str, str] | None = None

    def forget_transient(self) -> None:
        """Drop what is only needed until the account is active."""
        self.claim = None
        self.hints = []
        self.on_record = {}
        self.pending = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "code_id": self.code_id,
            "keycloak_id": self.keycloak_id,
            "on_record": {c: vars(r) for c, r in self.on_record.items()},
            "hints": self.hints,
        }
        if self.accepted_policies:
            out["accepted_policies"] = self.accepted_policies
        if self.pending is not None:
            out["pending"] = {c: vars(p) for c, p in self.pending.items()}
        if self.owed:
            out["owed"] = self.owed
        if self.replaced:  # only when set: an older replica reads the flow all the same
            out["replaced"] = self.replaced
        if self.claim is not None:
            out["claim"] = self.claim
        if self.activated:
            out["activated"] = True
        if self.caller is not None:
            out["oidc_request"] = self.caller
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ActivationData:
        pending = raw.get("pending")
        return cls(
            code_id=int(raw["code_id"]),
            keycloak_id=str(raw["keycloak_id"]),
            on_record={c: OnRecord(**r) for c, r in (raw.get("on_record") or {}).items()},
            hints=list(raw.get("hints") or []),
            accepted_policies=list(raw.get("accepted_policies") or []),
            pending=None
            if pending is None
            else {c: PendingContact(**p) for c, p in pending.items()},
            owed=dict(raw.get("owed") or {}),
            replaced=list(raw.get("replaced") or []),
            claim=raw.get("claim"),
            activated=bool(raw.get("activated")),
            caller=raw.get("oidc_request"),
        )
