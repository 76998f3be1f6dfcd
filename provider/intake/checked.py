"""The first pass of an import: every row checked as the source is read, before anything
is written, in memory that does not grow with the intake.

What it keeps of each student is three 8-byte keys (keys.py): its user ID, its email and
the two together, which is all that the duplicate check and the realm's check need. Keys
only say which user IDs to look at again: the duplicates reported are found by comparing
the exact IDs, so a collision costs a second look, never a wrong refusal. The
checked records themselves wait for the second pass in an encrypted spool (spool.py), so
the source is read once and the rows written are exactly the rows checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from types import TracebackType

from provider.contact_input import PhonePolicy
from provider.intake.keys import KeyBuffer, KeySet, key, pair_key
from provider.intake.records import (
    IntakeInvalid,
    IntakeRecord,
    Problem,
    RawRecord,
    Rules,
    appears_twice,
    check_record,
)
from provider.intake.spool import Spool

CHUNK = 500  # records sealed together in the spool
MAX_PROBLEMS_KEPT = 1000  # the first ones, in the source's order; all are counted


@dataclass(frozen=True)
class IntakeIndex:
    """Keys of every row: a user ID is in the intake, an email is, this pair is."""

    user_ids: KeySet
    emails: KeySet  # lower case; a key once for each row that holds it
    pairs: KeySet  # (user ID, email in lower case)

    @property
    def nbytes(self) -> int:
        return self.user_ids.nbytes + self.emails.nbytes + self.pairs.nbytes


class CheckedIntake:
    """An intake whose every row is valid: how many, their keys, and the records again,
    chunk by chunk, as often as needed."""

    def __init__(self, spool: Spool, count: int, index: IntakeIndex) -> None:
        self._spool = spool
        self.count = count
        self.index = index

    def records(self) -> Iterator[IntakeRecord]:
        for chunk in self._spool.chunks():
            for _, record in chunk:
                yield record

    def close(self) -> None:
        self._spool.close()

    def __enter__(self) -> CheckedIntake:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


class _Problems:
    """The first problems found, with their row's position; all of them counted."""

    def __init__(self) -> None:
        self.kept: list[tuple[int, Problem]] = []
        self.total = 0

    def add(self, position: int, found: Iterable[Problem]) -> None:
        for problem in found:
            self.total += 1
            if len(self.kept) < MAX_PROBLEMS_KEPT:
                self.kept.append((position, problem))

    def merge(self, later: list[tuple[int, Problem]]) -> None:
        """Problems found after the pass (duplicates): back into the source's order."""
        self.total += len(later)
        self.kept = sorted(self.kept + later, key=lambda kept: kept[0])[:MAX_PROBLEMS_KEPT]

    def raise_any(self) -> None:
        if self.total:
            raise IntakeInvalid([problem for _, problem in self.kept], self.total)


def check_intake(
    source: Iterable[RawRecord], rules: Rules, *, chunk_size: int = CHUNK
) -> CheckedIntake:
    """Every row of `source` checked, reading it once; `IntakeInvalid` lists the problems
    (a user ID twice anywhere in the intake included). Close the result when done."""
    spool = Spool()
    try:
        problems = _Problems()
        user_ids, emails, pairs = KeyBuffer(), KeyBuffer(), KeyBuffer()
        chunk: list[tuple[int, IntakeRecord]] = []
        count = 0
        for position, item in enumerate(source):
            found: list[Problem] = []
            record = check_record(item, rules, found)
            problems.add(position, found)
            if record is None:
                continue
            email = record.email.lower()
            user_ids.add(key(record.user_id))
            emails.add(key(email))
            pairs.add(pair_key(record.user_id, email))
            chunk.append((position, record))
            count += 1
            if len(chunk) == chunk_size:
                spool.write(chunk)
                chunk = []
        if chunk:
            spool.write(chunk)
        index = IntakeIndex(user_ids.sorted(), emails.sorted(), pairs.sorted())
        twice = index.user_ids.repeated()
        if twice:
            problems.merge(_duplicates(spool, twice))
        problems.raise_any()
    except BaseException:
        spool.close()
        raise
    return CheckedIntake(spool, count, index)


def _duplicates(spool: Spool, twice: set[int]) -> list[tuple[int, Problem]]:
    """Each later row of a user ID that occurs more than once, naming the first row: the
    keys say which IDs to look at, the exact IDs say which rows share one."""
    first_seen: dict[str, str] = {}
    found = []
    for chunk in spool.chunks():
        for position, record in chunk:
            if key(record.user_id) not in twice:
                continue
            first = first_seen.setdefault(record.user_id, record.where)
            if first != record.where:
                found.append((position, appears_twice(record.user_id, record.where, first)))
    return found


def validate(
    raw: Iterable[RawRecord],
    *,
    user_id_length: int,
    phone_policy: PhonePolicy | None = None,
    today: date | None = None,
) -> list[IntakeRecord]:
    """Every record checked, all in a list (for a small intake); raises `IntakeInvalid`
    listing the problems."""
    rules = Rules(user_id_length, phone_policy, today or date.today())
    with check_intake(raw, rules) as checked:
        return list(checked.records())
