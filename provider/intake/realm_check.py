"""Which rows of an intake would touch an account that is not theirs: checked against the
realm before any write, reading the realm a page at a time.

Keycloak's partial import skips a user whose username *or email* exists, so without this
a Registry row could be attached to a staff account, to another student's account, or
to nothing at all. What is kept is bounded by the intake, not the realm: keys of the
intake's user IDs that have accounts (and which are active), the realm's students-group
members as keys, and exact names only for the rare accounts that conflict.

A key collision (keys.py: about one import in 10^9) could at worst refuse a row that is
fine, or take a row for an active or existing account (that row then gets no account
this time); since the partial import never changes an account that exists, nobody
else's account is ever touched.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from provider.intake.checked import IntakeIndex
from provider.intake.keys import KeyBuffer, KeySet, key, pair_key
from provider.intake.records import IntakeRecord, Problem

Account = dict[str, Any]  # a brief user representation: id, username, email, ...


@dataclass
class RealmView:
    """What the realm holds that concerns one intake."""

    active: KeySet  # intake user IDs whose accounts are active: left out entirely
    present: KeySet  # intake user IDs that are accounts of any kind
    not_students: set[str] = field(default_factory=set)  # neither pending nor active
    other_email: set[int] = field(default_factory=set)  # pending, with another email
    email_owners: dict[str, str] = field(default_factory=dict)  # intake email -> other account
    outside_group: list[str] = field(default_factory=list)  # pending account IDs, whole realm

    def problems(self, records: Iterable[IntakeRecord]) -> list[Problem]:
        """The rows that conflict, each in plain words; a second look at the records only
        when the realm showed a conflict may exist."""
        if not (self.not_students or self.other_email or self.email_owners):
            return []
        found = []
        for r in records:
            user_key = key(r.user_id)
            if user_key in self.present:
                if user_key in self.active:
                    continue  # left as it is, reported as already active
                if r.user_id in self.not_students:
                    found.append(
                        Problem(
                            r.where,
                            f"{r.user_id} is an account that is not a pending student: "
                            "nothing of it is changed",
                        )
                    )
                elif user_key in self.other_email:
                    found.append(
                        Problem(
                            r.where,
                            f"{r.user_id} is already in Keycloak with another email: "
                            "correct the row or the account",
                        )
                    )
            elif r.email.lower() in self.email_owners:
                found.append(
                    Problem(
                        r.where,
                        f"the email of {r.user_id} belongs to another account "
                        f"({self.email_owners[r.email.lower()]})",
                    )
                )
        return found


def read_realm(
    intake: IntakeIndex,
    *,
    members: Iterable[Account],
    active: Iterable[Account],
    pending: Iterable[Account],
    everyone: Iterable[Account],
) -> RealmView:
    """One look at each listing (students-group members, active and pending accounts,
    every account), each consumed as it streams in."""
    member_ids = KeySet.of(key(m["id"]) for m in members)
    active_keys = KeyBuffer()
    for account in active:
        if key(account["username"]) in intake.user_ids:
            active_keys.add(key(account["username"]))
    active_set = active_keys.sorted()

    pending_keys = KeyBuffer()
    other_email: set[int] = set()
    outside_group: list[str] = []
    for account in pending:
        if key(account["id"]) not in member_ids:
            outside_group.append(account["id"])
        user_key = key(account["username"])
        if user_key in intake.user_ids:
            pending_keys.add(user_key)
            email = (account.get("email") or "").lower()
            if pair_key(account["username"], email) not in intake.pairs:
                other_email.add(user_key)
    pending_set = pending_keys.sorted()

    present = KeyBuffer()
    not_students: set[str] = set()
    email_owners: dict[str, str] = {}
    for account in everyone:
        username = account["username"]
        user_key = key(username)
        if user_key in intake.user_ids:
            present.add(user_key)
            if user_key not in active_set and user_key not in pending_set:
                not_students.add(username)
        email = (account.get("email") or "").lower()
        if email:
            rows = intake.emails.count(key(email))
            if rows > (1 if pair_key(username, email) in intake.pairs else 0):
                email_owners[email] = username  # some row with this email is not this account
    return RealmView(
        active=active_set,
        present=present.sorted(),
        not_students=not_students,
        other_email=other_email,
        email_owners=email_owners,
        outside_group=outside_group,
    )
