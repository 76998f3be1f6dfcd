"""Alert on a change, not on every run: the scheduled check emails only when something is
wrong that the previous stored result had not already told.

Each stored run keeps `told`, the problems that count as alerted after it. A problem
that stays is not mailed again; one that is repaired and comes back is mailed again. An
email that could not be sent leaves `told` as it was, so the next run tries again.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    new: frozenset[str]  # problems the previous run had not told: the email names them
    current: frozenset[str]

    @property
    def send(self) -> bool:
        return bool(self.new)


def decide(previous: frozenset[str] | None, current: set[str]) -> Decision:
    """`previous` None: no earlier run (everything wrong now is new)."""
    seen = previous or frozenset()
    return Decision(frozenset(current - seen), frozenset(current))
