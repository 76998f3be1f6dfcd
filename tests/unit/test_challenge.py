"""The proof-of-work challenge: issued signed and expiring, redeemed once, solved by the
`altcha` package's own solver (what the widget does in the browser)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import altcha
import pytest

from provider.guards import challenge
from provider.keyed_hash import KeyedHasher, Purpose

MAX_NUMBER = 400  # small: the tests solve many


def _solved(issued: str) -> str:
    made = altcha.Challenge.from_dict(json.loads(issued))
    solution = altcha.solve_challenge(made)
    assert solution is not None
    return altcha.Payload(made, solution).to_base64()


def _now() -> datetime:
    return datetime.now(UTC)


def test_a_solution_is_redeemed_once(sessions, hasher: KeyedHasher) -> None:
    payload = _solved(challenge.issue(hasher, MAX_NUMBER, _now()))
    assert challenge.redeem(sessions, hasher, payload, _now())
    assert not challenge.redeem(sessions, hasher, payload, _now())  # a replay
    # The same solved challenge dressed up differently is still the same challenge.
    data = json.loads(base64.b64decode(payload))
    data["solution"]["time"] = 1
    again = base64.b64encode(json.dumps(data).encode()).decode()
    assert not challenge.redeem(sessions, hasher, again, _now())


def test_the_counter_is_never_nearly_free(hasher: KeyedHasher) -> None:
    for _ in range(20):
        issued = altcha.Challenge.from_dict(json.loads(challenge.issue(hasher, 1000, _now())))
        solution = altcha.solve_challenge(issued)
        assert solution is not None and 500 <= solution.counter < 1000


def test_the_challenge_expires(sessions, hasher: KeyedHasher) -> None:
    long_ago = _now() - challenge.LIFETIME - timedelta(seconds=5)
    payload = _solved(challenge.issue(hasher, MAX_NUMBER, long_ago))
    assert not challenge.redeem(sessions, hasher, payload, _now())


def test_signing_keys_are_derived_and_separate(hasher: KeyedHasher) -> None:
    signing = hasher.subkey(Purpose.CHALLENGE_SIGNATURE)
    assert signing != hasher.subkey(Purpose.CHALLENGE_SOLUTION)
    assert signing != KeyedHasher(b"another-key-" + b"y" * 32).subkey(Purpose.CHALLENGE_SIGNATURE)
    assert len(signing) == 32


def _tampered(payload: str, change: str) -> str:
    data = json.loads(base64.b64decode(payload))
    if change == "wrong key":
        data["solution"]["derivedKey"] = "00" * 32
    elif change == "easier parameters":
        data["challenge"]["parameters"]["cost"] = 1
    elif change == "later expiry":
        data["challenge"]["parameters"]["expiresAt"] += 3600
    elif change == "no key signature":
        del data["challenge"]["parameters"]["keySignature"]
    elif change == "no signature":
        del data["challenge"]["signature"]
    return base64.b64encode(json.dumps(data).encode()).decode()


@pytest.mark.parametrize(
    "change",
    [
        "wrong key",
        "easier parameters",
        "later expiry",
        "no key signature",
        "no signature",
    ],
)
def test_a_tampered_solution_is_refused(sessions, hasher: KeyedHasher, change: str) -> None:
    payload = _solved(challenge.issue(hasher, MAX_NUMBER, _now()))
    assert not challenge.redeem(sessions, hasher, _tampered(payload, change), _now())
    assert challenge.redeem(sessions, hasher, payload, _now())  # the real one still works


def test_another_services_challenge_is_refused(sessions, hasher: KeyedHasher) -> None:
    other = KeyedHasher(b"another-key-" + b"y" * 32)
    payload = _solved(challenge.issue(other, MAX_NUMBER, _now()))
    assert not challenge.redeem(sessions, hasher, payload, _now())


@pytest.mark.parametrize(
    "payload",
    [
        None,
        "",
        "not base64 at all!",
        base64.b64encode(b"[1, 2]").decode(),
        base64.b64encode(b'{"challenge": 1, "solution": 2}').decode(),
        base64.b64encode(
            json.dumps({"challenge": None, "solution": None, "test": True}).encode()
        ).decode(),
        "A" * (challenge.MAX_PAYLOAD + 1),
    ],
)
def test_what_is_not_a_payload_is_refused(sessions, hasher: KeyedHasher, payload) -> None:
    assert not challenge.redeem(sessions, hasher, payload, _now())
