"""Benchmark: how long recovery's start answer takes for each kind of account, on the
POST alone.

    scripts/bench recovery-uniformity [--rounds 30] [--keycloak URL]

The service runs as a real `umpass serve` process. One account of each kind is prepared
(unknown user ID, unknown email, pending student, active student without a verified
number, disabled active student, staff-like account outside the service's reach is the
unknown case as far as the service can see) and the recoverable one (active, verified
number: a real code goes out, to the SMS outbox file). Then `--rounds` times, in a
shuffled order, a browser of its own loads the start page (not timed) and posts it
(timed). Between rounds the recoverable student's sends are forgotten, so its throttles
never turn it into a decoy. Prints min/p50/p95/max per kind and last
`RESULT recovery_floor_ms=500 min_ms=… p50_spread_ms=… recoverable_minus_others_p50_ms=…`;
exits 1 when any answer came faster than the floor or a code did not go out.
"""

from __future__ import annotations

import json
import re
import secrets
import sys
import time
from datetime import date
from pathlib import Path

import requests
from rich.console import Console
from rich.progress import Progress
from sqlalchemy import delete

from devstack.background import serve_on_a_free_port
from devstack.bench_timing import (
    keycloak_for,
    percentile,
    shuffled_rounds,
    timing_table,
    uniformity_main,
)
from keycloak_config.apply import ApplyOptions, apply_realm
from provider.config import load_settings
from provider.keycloak_connection import MasterAdmin, admin_api
from provider.recovery.sending import ANSWER_FLOOR_SECONDS
from provider.services import Services
from provider.storage import migrate
from provider.storage.models import ContactSend
from provider.students import NewStudent, create_pending_student

console = Console(stderr=True)
_CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
RECOVERABLE = "recoverable (code sent)"


def _student(svc: Services, prefix: str, phone: str) -> str:
    user_id = f"{prefix}{secrets.token_hex(3)}"
    create_pending_student(
        svc,
        NewStudent(
            user_id,
            "Bench",
            "Student",
            f"{user_id}@bench.example.edu",
            phone,
            date(2006, 6, 6),
            "B1234567",
        ),
    )
    return user_id


def _active(svc: Services, user_id: str, *, phone_verified: bool) -> str:
    user = svc.keycloak.find_user(user_id)
    if user is None:
        raise RuntimeError(f"{user_id} vanished from Keycloak")
    svc.keycloak.activate(user.id, secrets.token_urlsafe(18), attributes={})
    phone = user.attribute("phone_number") or ""
    svc.keycloak.set_phone(user.id, phone, verified=phone_verified)
    return user.id


def _cases(svc: Services, env: dict[str, str]) -> tuple[dict[str, str], str, str]:
    """What each kind posts as the account; the recoverable one's user ID and number."""
    number = "+85362" + f"{secrets.randbelow(10**6):06d}"
    pending = _student(svc, "p", "+85362000001")
    unverified = _student(svc, "n", "+85362000002")
    _active(svc, unverified, phone_verified=False)
    disabled = _student(svc, "x", "+85362000003")
    disabled_id = _active(svc, disabled, phone_verified=True)
    admin = admin_api(
        env["UMPASS_KEYCLOAK_URL"],
        MasterAdmin(env["KEYCLOAK_ADMIN_USER"], env["KEYCLOAK_ADMIN_PASSWORD"]),
        timeout=30,
    )
    admin.change_current_realm(env["UMPASS_REALM"])
    admin.update_user(disabled_id, {"enabled": False})
    recoverable = _student(svc, "r", number)
    _active(svc, recoverable, phone_verified=True)
    return (
        {
            "unknown user ID": f"zz{secrets.token_hex(3)[:5]}",
            "unknown email": f"nobody{secrets.token_hex(3)}@bench.example.edu",
            "pending student": pending,
            "active, number not verified": unverified,
            "disabled": disabled,
            RECOVERABLE: recoverable,
        },
        recoverable,
        number,
    )


def _post_seconds(base: str, account: str) -> tuple[int, float]:
    with requests.Session() as browser:
        page = browser.get(f"{base}/recover/start", timeout=60)
        token = _CSRF.search(page.text)
        if token is None:
            raise RuntimeError(f"start page without a form (HTTP {page.status_code})")
        data = {"csrf_token": token.group(1), "account": account, "channel": "phone"}
        started = time.perf_counter()
        answer = browser.post(f"{base}/recover/start", data=data, allow_redirects=False, timeout=60)
        _ = answer.content
        return answer.status_code, time.perf_counter() - started


def _texts_to(outbox: Path, number: str) -> int:
    if not outbox.exists():
        return 0
    lines = outbox.read_text(encoding="utf-8").splitlines()
    return sum(1 for line in lines if json.loads(line)["to"] == number)


def run(rounds: int, keycloak_url: str | None) -> int:
    many = "100000 per minute"  # every attempt from 127.0.0.1, for the same few accounts
    limits = {
        "UMPASS_IDENTIFY_LIMIT": many,
        "UMPASS_RECOVERY_ACCOUNT_LIMIT": many,
        "UMPASS_RECOVERY_CONTACT_LIMIT": many,
        "UMPASS_STUDENT_SEND_LIMIT": "100000 per hour",
    }
    with keycloak_for(keycloak_url, console, **limits) as stack:
        env = stack.env
        apply_realm(ApplyOptions.from_env(env, fast_hash=True))
        svc = Services.assemble(load_settings(env))
        migrate.upgrade(svc.engine)
        cases, recoverable, number = _cases(svc, env)
        outbox = Path(env["UMPASS_SMS_OUTBOX"])
        service = serve_on_a_free_port(stack.workdir / "service.log", env, threads=4)
        seconds: dict[str, list[float]] = {case: [] for case in cases}
        try:
            _post_seconds(service.direct_url, cases["unknown user ID"])  # warm-up
            order = list(shuffled_rounds(list(cases), rounds, seed=17))
            with Progress(console=console) as progress:
                task = progress.add_task("start answers", total=len(order))
                for case in order:
                    status, took = _post_seconds(service.direct_url, cases[case])
                    if status != 302:
                        raise RuntimeError(f"{case}: HTTP {status}, not the code page")
                    seconds[case].append(took)
                    with svc.sessions.begin() as db:  # its throttles never turn it into a decoy
                        db.execute(delete(ContactSend).where(ContactSend.user_id == recoverable))
                    progress.advance(task)
            deadline = time.monotonic() + 10
            while _texts_to(outbox, number) < rounds and time.monotonic() < deadline:
                time.sleep(0.1)
            sent = _texts_to(outbox, number)
        finally:
            service.stop()

    floor_ms = ANSWER_FLOOR_SECONDS * 1000
    ms = {case: [v * 1000 for v in values] for case, values in seconds.items()}
    console.print(timing_table("recovery start POST", ms))
    p50 = {case: percentile(values, 0.5) for case, values in ms.items()}
    others = [p for case, p in p50.items() if case != RECOVERABLE]
    fastest = min(min(values) for values in ms.values())
    spread = max(p50.values()) - min(p50.values())
    gap = p50[RECOVERABLE] - sum(others) / len(others)
    held = fastest >= floor_ms and sent == rounds
    print(
        f"RESULT recovery_floor_ms={floor_ms:.0f} min_ms={fastest:.1f} p50_spread_ms={spread:.1f} "
        f"recoverable_minus_others_p50_ms={gap:.1f} codes_sent={sent}/{rounds} "
        f"rounds={rounds} floor_held={'yes' if held else 'no'}"
    )
    return 0 if held else 1


def main(argv: list[str] | None = None) -> int:
    return uniformity_main("scripts/bench recovery-uniformity", run, argv)


if __name__ == "__main__":
    sys.exit(main())
