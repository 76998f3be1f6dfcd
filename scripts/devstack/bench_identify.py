"""Benchmark: how long each kind of identify failure takes, on the POST alone.

    scripts/bench identify-uniformity [--rounds 30] [--keycloak URL]

The service runs as a real `umpass serve` process. For every kind of failure (unknown ID,
wrong code, wrong date, wrong last 4, expired, used, revoked code, already-active
account, locked ID) and, for comparison, a success, one pending student is prepared;
then `--rounds` times, in a shuffled order, a browser of its own loads the page (not
timed) and posts the form (timed, from the request to the whole answer). Between two
attempts the student's failure count is cleared, so the measured attempts never lock an
ID that is not meant to be locked.

Without `--keycloak` it starts its own (the test instance, free ports); with it, it uses
that one (KEYCLOAK_ADMIN_USER / KEYCLOAK_ADMIN_PASSWORD) in a realm of its own, deleted
afterwards. Prints min, p50, p95 and max per kind and last
`RESULT identify_floor_ms=250 failure_min_ms=… failure_p50_spread_ms=… …`; exits 1 when
any failure answered faster than the floor.
"""

from __future__ import annotations

import re
import secrets
import sys
import time
from datetime import UTC, date, datetime, timedelta

import requests
from rich.console import Console
from sqlalchemy import delete, update

from devstack.background import serve_on_a_free_port
from devstack.bench_timing import (
    keycloak_for,
    percentile,
    shuffled_rounds,
    timing_table,
    uniformity_main,
)
from keycloak_config.apply import ApplyOptions, apply_realm
from provider.activation_codes import revoke_codes
from provider.config import load_settings
from provider.date_input import form_fields
from provider.flows.steps.identify_check import FAILURE_FLOOR_SECONDS
from provider.guards import lockout
from provider.proofing import normalize_id_last4
from provider.services import Services
from provider.storage import migrate
from provider.storage.models import ActivationCode, IdentifyLockout
from provider.students import NewStudent, create_pending_student

console = Console(stderr=True)
_CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
DOB = date(2006, 6, 6)
ID_NUMBER = "B1234567"
SUCCESS = "success (for comparison)"
MISMATCH = "We could not match those details"


def _student(svc: Services, prefix: str) -> dict[str, str]:
    user_id = f"{prefix}{secrets.token_hex(3)}"
    issued = create_pending_student(
        svc,
        NewStudent(
            user_id,
            "Bench",
            "Student",
            f"{user_id}@bench.example.edu",
            "+85362000000",
            DOB,
            ID_NUMBER,
        ),
    )
    return {
        "user_id": user_id,
        "activation_code": issued.code,
        **form_fields(DOB),
        "id_last4": normalize_id_last4(ID_NUMBER) or "",
    }


def _set_code(svc: Services, user_id: str, **values: object) -> None:
    with svc.sessions.begin() as db:
        db.execute(update(ActivationCode).where(ActivationCode.user_id == user_id).values(**values))


def _activate(svc: Services, user_id: str) -> None:
    user = svc.keycloak.find_user(user_id)
    if user is None:
        raise RuntimeError(f"{user_id} vanished from Keycloak")
    # Activated the service's way: one write, a password and the state.
    svc.keycloak.activate(user.id, secrets.token_urlsafe(18), attributes={})


def _cases(svc: Services) -> dict[str, dict[str, str]]:
    """What each kind of attempt posts: a student's true details with one thing wrong."""
    now = datetime.now(UTC)
    cases = {
        "unknown ID": {**_student(svc, "u"), "user_id": f"zz{secrets.token_hex(3)[:5]}"},
        "wrong code": {**_student(svc, "c"), "activation_code": "AAAAA-BBBBB-CCCCC"},
        "wrong date": {**_student(svc, "d"), **form_fields(date(2006, 6, 7))},
        "wrong last 4": {**_student(svc, "l"), "id_last4": "0000"},
    }
    expired = cases["expired code"] = _student(svc, "e")
    _set_code(svc, expired["user_id"], expires_at=now - timedelta(days=1))
    used = cases["used code"] = _student(svc, "x")
    _set_code(svc, used["user_id"], used_at=now - timedelta(hours=1))
    _activate(svc, used["user_id"])
    revoked = cases["revoked code"] = _student(svc, "r")
    with svc.sessions.begin() as db:
        revoke_codes(db, revoked["user_id"])
    active = cases["already active"] = _student(svc, "a")
    _activate(svc, active["user_id"])
    locked = cases["locked ID"] = _student(svc, "k")
    key = lockout.lock_key(locked["user_id"])
    for _ in range(lockout.MAX_FAILURES):
        lockout.begin_attempt(svc.sessions, key, now)
        lockout.record_failure(svc.sessions, key, now)
    cases[SUCCESS] = _student(svc, "s")
    return cases


def _post_seconds(base: str, sent: dict[str, str]) -> tuple[int, str, float]:
    """(status, page, seconds) of the POST alone; the page carrying its token is not timed.

    No Origin header, as the activation benchmark: the service's public address
    (UMPASS_BASE_URL) is not this port, and on plain HTTP a post without one is let in."""
    with requests.Session() as browser:
        page = browser.get(f"{base}/activate/identify", timeout=60)
        token = _CSRF.search(page.text)
        if token is None:
            raise RuntimeError(f"identify page without a form (HTTP {page.status_code})")
        data = {"csrf_token": token.group(1), **sent}
        started = time.perf_counter()
        answer = browser.post(
            f"{base}/activate/identify", data=data, allow_redirects=False, timeout=60
        )
        text = answer.text  # the whole answer, not only its headers
        return answer.status_code, text, time.perf_counter() - started


def run(rounds: int, keycloak_url: str | None) -> int:
    # Every attempt comes from 127.0.0.1.
    with keycloak_for(keycloak_url, console, UMPASS_IDENTIFY_LIMIT="100000 per minute") as stack:
        env = stack.env
        apply_realm(ApplyOptions.from_env(env, fast_hash=True))  # identify sets no password
        svc = Services.assemble(load_settings(env))
        migrate.upgrade(svc.engine)
        cases = _cases(svc)
        # What each answer must be, so that nothing else (a refused form) is timed instead.
        expected = {case: (400, MISMATCH) for case in cases} | {
            "locked ID": (429, "Too many attempts for this user ID"),
            SUCCESS: (302, ""),
        }
        service = serve_on_a_free_port(stack.workdir / "service.log", env, threads=4)
        seconds: dict[str, list[float]] = {case: [] for case in cases}
        try:
            _post_seconds(service.direct_url, cases["unknown ID"])  # warm-up, not counted
            for case in shuffled_rounds(list(cases), rounds, seed=13):
                status, page, took = _post_seconds(service.direct_url, cases[case])
                want_status, want_text = expected[case]
                if status != want_status or want_text not in page:
                    raise RuntimeError(f"{case}: HTTP {status}, not the answer it should get")
                seconds[case].append(took)
                if case not in ("locked ID", SUCCESS):  # never lock the others
                    with svc.sessions.begin() as db:
                        key = lockout.lock_key(cases[case]["user_id"])
                        db.execute(delete(IdentifyLockout).where(IdentifyLockout.user_id == key))
        finally:
            service.stop()

    floor_ms = FAILURE_FLOOR_SECONDS * 1000
    console.print(
        timing_table(
            "identify POST", {c: [v * 1000 for v in values] for c, values in seconds.items()}
        )
    )
    failures = {
        case: [v * 1000 for v in values] for case, values in seconds.items() if case != SUCCESS
    }
    p50 = {case: percentile(ms, 0.5) for case, ms in failures.items()}
    fastest = min(min(ms) for ms in failures.values())
    spread = max(p50.values()) - min(p50.values())
    held = fastest >= floor_ms
    success_p50 = percentile([v * 1000 for v in seconds[SUCCESS]], 0.5)
    print(
        f"RESULT identify_floor_ms={floor_ms:.0f} failure_min_ms={fastest:.1f} "
        f"failure_p50_spread_ms={spread:.1f} slowest_failure_p50_ms={max(p50.values()):.1f} "
        f"success_p50_ms={success_p50:.1f} rounds={rounds} floor_held={'yes' if held else 'no'}"
    )
    return 0 if held else 1


def main(argv: list[str] | None = None) -> int:
    return uniformity_main("scripts/bench identify-uniformity", run, argv)


if __name__ == "__main__":
    sys.exit(main())
