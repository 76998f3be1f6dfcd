"""Alert on a change, not on every run: the scheduled check emails only when something is
wrong that was not wrong at the last run.

The state is the set of problem keys the last run saw, in a small JSON file. A problem
that stays is not mailed again; one that is repaired and comes back is mailed again. An
email that could not be sent is not remembered as sent, so the next run tries again.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Decision:
    new: frozenset[str]  # problems the last run did not see: the email names them
    current: frozenset[str]

    @property
    def send(self) -> bool:
        return bool(self.new)


def decide(previous: frozenset[str] | None, current: set[str]) -> Decision:
    """`previous` None: no earlier run (everything wrong now is new)."""
    seen = previous or frozenset()
    return Decision(frozenset(current - seen), frozenset(current))


def read_state(path: Path) -> frozenset[str] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # unreadable: treat as a first run (an extra email beats a missed one)
    problems = data.get("problems") if isinstance(data, dict) else None
    if not isinstance(problems, list):
        return None
    return frozenset(str(p) for p in problems)


def write_state(path: Path, problems: frozenset[str]) -> None:
    """Atomically (a crash mid-write must not forget what was already mailed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps({"problems": sorted(problems)}), encoding="utf-8")
    partial.replace(path)
