"""Client addresses for tests of per-address limits."""

from __future__ import annotations

import secrets


def fresh_address() -> str:
    """An address no other test of the run uses (24 random bits): tests that spend a
    per-address budget in the same app must never share one (with 250 addresses to pick
    from, two tests met on one about once in 250 runs)."""
    a, b, c = (secrets.randbelow(256) for _ in range(3))
    return f"10.{a}.{b}.{max(c, 1)}"
