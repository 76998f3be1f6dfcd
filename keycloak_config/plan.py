"""What `apply` (or `--uninstall`) would do to a realm, in plain words, grouped."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Action = Literal["add", "change", "raise", "remove", "restore", "keep"]

# Group headings, in the order the plan prints them.
HEADINGS: dict[Action, str] = {
    "add": "Add",
    "raise": "Raise to the extension's floor (the realm is weaker)",
    "change": "Change",
    "restore": "Restore",
    "remove": "Remove",
    "keep": "Leave alone",
}


# What a change can be about (Change.item), as the realm-health page words each.
ITEMS = frozenset(
    {
        "realm",
        "setting",  # a realm setting: name is its key
        "password-policy",
        "locales",  # name: the locales added
        "profile-attribute",
        "profile-group",
        "realm-text",  # name: locale/key
        "realm-role",
        "client",
        "client-scope",  # realm roles (part) a client (name) may put in its tokens
        "claim-scope",  # the extension's client scope `name` (keycloak_config/client-scopes.json)
        "scope-mapper",  # mapper `part` of the extension's client scope `name`
        "realm-default-scope",  # client scope `name` among the realm's default scopes
        "default-scope",  # client scope `part` among the default scopes of client `name`
        "flow",
        "binding",  # name: the realm's binding key (browserFlow ...)
        "identity-provider",
        "provider-post-login",  # the post-login flow of identity provider `name`
        "provider-mapper",  # mapper `part` of identity provider `name`
        "service-account-roles",  # realm-management roles (part) of client name's account
        "service-account-realm-roles",
        "service-account-group",  # client name's account in group `part`
        "admin-policy",
        "admin-permission",
        "group",
        "group-members",  # `part` accounts to add to group `name`
    }
)


@dataclass(frozen=True)
class Change:
    action: Action
    subject: str
    old: str | None = None
    new: str | None = None
    why: str = ""
    # The subject in parts, for a reader that words it in its own language (the
    # realm-health page): what kind of thing (an `ITEMS` key), which one, and the part of
    # it changed (roles, a group, a mapper). The plan itself prints the subject.
    item: str = ""
    name: str = ""
    part: str = ""

    def line(self) -> str:
        text = self.subject
        if self.old is not None or self.new is not None:
            text += f": {self.old if self.old is not None else '(none)'} → {self.new}"
        if self.why:
            text += f" — {self.why}"
        return text


@dataclass
class Plan:
    realm: str
    changes: list[Change] = field(default_factory=list)
    # What the realm will not have although nothing is wrong (an optional part missing):
    # printed under the plan, never a write or drift.
    notes: list[str] = field(default_factory=list)

    def writes(self) -> list[Change]:
        return [c for c in self.changes if c.action != "keep"]

    def lines(self) -> list[str]:
        """One line per write, for logs and tests."""
        return [f"{c.action} {c.line()}" for c in self.writes()]

    def render(self, title: str) -> str:
        out = [f"{title} (realm {self.realm})"]
        for action, heading in HEADINGS.items():
            items = [c for c in self.changes if c.action == action]
            if items:
                out.append(f"\n{heading} ({len(items)}):")
                out += [f"  - {c.line()}" for c in items]
        if not self.writes():
            out.append("\nNothing to do: the realm is up to date.")
        out += [f"\nNote: {note}" for note in self.notes]
        return "\n".join(out)


class Planner:
    """What the applier and the uninstaller share: each write is a line of the plan,
    carried out only when not planning."""

    def __init__(self, realm: str, *, dry_run: bool) -> None:
        self.plan = Plan(realm)
        self.dry_run = dry_run

    def _write(self, change: Change) -> bool:
        self.plan.changes.append(change)
        return not self.dry_run

    def _keep(self, subject: str, why: str = "") -> None:
        self.plan.changes.append(Change("keep", subject, why=why))
