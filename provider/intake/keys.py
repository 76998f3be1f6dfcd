"""Short keys for the names an import compares (user IDs, emails, account IDs), so that
what it remembers about every student is 8 bytes, not the name.

A key is Python's own string hash: 64 bits, keyed afresh in every process (SipHash), so
nobody can choose names that collide. Equal names always have equal keys; two different
names share one with a chance of about 1 in 10^19 per pair, i.e. about 1 in 10^9 for an
intake of 50,000 against a realm of 100,000 accounts. What a collision could do is said
where keys are used (checked.py, realm_check.py); an account that is named in a message
is always compared by its exact name.
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable

if sys.hash_info.width < 64:  # 32-bit hashes would collide within one intake
    raise ImportError("the intake import needs a 64-bit Python")


def key(name: str) -> int:
    return hash(name)


def pair_key(first: str, second: str) -> int:
    """One key for two names together (a user ID with its email)."""
    return hash((first, second))


class KeyBuffer:
    """Keys gathered one by one (8 bytes each), sorted once into a `KeySet`."""

    def __init__(self) -> None:
        self._keys = array("q")

    def add(self, value: int) -> None:
        self._keys.append(value)

    def __len__(self) -> int:
        return len(self._keys)

    def sorted(self) -> KeySet:
        self._keys = array("q", sorted(self._keys))
        return KeySet(self._keys)


class KeySet:
    """A sorted array of keys: membership and counts by binary search, 8 bytes a key."""

    def __init__(self, keys: array | None = None) -> None:
        self._keys = keys if keys is not None else array("q")

    @classmethod
    def of(cls, keys: Iterable[int]) -> KeySet:
        return cls(array("q", sorted(keys)))

    def __contains__(self, value: int) -> bool:
        at = bisect_left(self._keys, value)
        return at < len(self._keys) and self._keys[at] == value

    def count(self, value: int) -> int:
        return bisect_right(self._keys, value) - bisect_left(self._keys, value)

    def __len__(self) -> int:
        return len(self._keys)

    def repeated(self) -> set[int]:
        """Keys that occur more than once."""
        keys = self._keys
        return {keys[i] for i in range(1, len(keys)) if keys[i] == keys[i - 1]}

    @property
    def nbytes(self) -> int:
        return self._keys.itemsize * len(self._keys)
