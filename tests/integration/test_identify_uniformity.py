"""Every way the identify step can fail, side by side, through the real HTTP server.

Each case changes one thing from a pending student's true details (a fresh student per
case, so no case counts towards another's lockout). The answers must not tell the cases
apart: the same status, the same page once the CSRF token, any nonce and the values the
student typed are blanked, the same headers in the same order once the per-request ones
(Date, Content-Length, nonces, cookie values) are blanked, and the same cookie names.
A locked ID has its own answer (429, "try again in n minutes"), the same for an ID that
exists and one that does not, with the right details or wrong ones; beside the mismatch
answer it differs only in its status and that sentence.

How long each answer takes is measured on the POST alone by `scripts/bench
identify-uniformity` (a clock has no place in a test); tests/unit/test_identify_floor.py
proves the padding to the floor on a clock the test drives.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import requests
from sqlalchemy import update

from provider.activation_codes import revoke_codes
from provider.date_input import form_fields
from provider.guards.lockout import MAX_FAILURES
from provider.services import Services
from provider.storage.models import ActivationCode
from tests.support.flow_client import StudentDetails
from tests.support.recovery_http import blank_header
from tests.support.students import enrol_student

_CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
TYPED = (
    "user_id",
    "activation_code",
    "date_of_birth-day",
    "date_of_birth-month",
    "date_of_birth-year",
    "id_last4",
)
MISMATCH = "We could not match those details. Check each one and try again."
LOCKED = re.compile(
    r"Too many attempts for this user ID\. Try again in \d+ minutes?, or ask the IT help desk\."
)


@dataclass(frozen=True)
class Answer:
    status: int
    body: str
    headers: list[tuple[str, str]]  # in the order sent, repeated ones kept
    cookies_set: list[str]  # names in the answer's Set-Cookie headers
    cookies_held: list[str]  # names the browser holds afterwards


def _blank_body(body: str) -> str:
    body = _CSRF.sub('name="csrf_token" type="hidden" value="-"', body)
    body = re.sub(r'nonce="[^"]*"', 'nonce="-"', body)
    for name in TYPED:  # what the student typed is echoed back into the form
        body = re.sub(rf'(<input [^>]*\bname="{name}"[^>]*\bvalue=")[^"]*"', r'\1-"', body)
    return body


def attempt(base: str, details: dict[str, str]) -> Answer:
    """A browser of its own: the page, then the form posted as Chromium would post it."""
    with requests.Session() as browser:
        page = browser.get(f"{base}/activate/identify", timeout=30)
        token = _CSRF.search(page.text)
        assert page.status_code == 200 and token, page.text[:300]
        answer = browser.post(
            f"{base}/activate/identify",
            data={"csrf_token": token.group(1), **details},
            headers={"Origin": base},
            allow_redirects=False,
            timeout=30,
        )
        raw = list(answer.raw.headers.items())
        return Answer(
            status=answer.status_code,
            body=_blank_body(answer.text),
            headers=[blank_header(k, v) for k, v in raw],
            cookies_set=sorted(v.split("=", 1)[0] for k, v in raw if k.lower() == "set-cookie"),
            cookies_held=sorted(c.name for c in browser.cookies),
        )


def details(who: StudentDetails, **changes: str) -> dict[str, str]:
    return {
        "user_id": who.user_id,
        "activation_code": who.code,
        **form_fields(who.date_of_birth),
        "id_last4": who.id_last4,
        **changes,
    }


def _set_code(services: Services, user_id: str, **values: object) -> None:
    with services.sessions.begin() as db:
        db.execute(update(ActivationCode).where(ActivationCode.user_id == user_id).values(**values))


def _activate_in_keycloak(services: Services, user_id: str) -> None:
    user = services.keycloak.find_user(user_id)
    assert user is not None
    # Activated the service's way: one write, a password and the state.
    assert services.keycloak.activate(user.id, secrets.token_urlsafe(18), attributes={})


def _lock(base: str, who: StudentDetails, **changes: str) -> None:
    for _ in range(MAX_FAILURES):
        assert attempt(base, details(who, id_last4="0000", **changes)).status == 400


def _same(answers: dict[str, Answer]) -> None:
    """Every answer equal to the first, field by field, naming the case that differs."""
    (first_case, first), *rest = answers.items()
    for case, answer in rest:
        for field in ("status", "cookies_set", "cookies_held", "headers", "body"):
            assert getattr(answer, field) == getattr(first, field), (
                f"{case!r} differs from {first_case!r} in its {field}"
            )


def test_every_identify_failure_looks_the_same(live_url: str, services: Services) -> None:
    now = datetime.now(UTC)

    def fresh(prefix: str) -> StudentDetails:
        return enrol_student(services, prefix)

    cases: dict[str, dict[str, str]] = {}
    cases["unknown ID"] = details(fresh("u"), user_id=f"zz{secrets.token_hex(3)[:5]}")
    cases["malformed ID"] = details(fresh("m"), user_id="??")
    cases["wrong code"] = details(fresh("c"), activation_code="AAAAA-BBBBB-CCCCC")
    cases["someone else's code"] = details(fresh("s"), activation_code=fresh("o").code)
    cases["wrong date"] = details(fresh("d"), **form_fields(date(2006, 2, 27)))
    cases["wrong last 4"] = details(fresh("l"), id_last4="4568")

    expired = fresh("e")
    _set_code(services, expired.user_id, expires_at=now - timedelta(days=1))
    cases["expired code"] = details(expired)

    replayed = fresh("p")  # activated, then its code typed again
    _set_code(services, replayed.user_id, used_at=now - timedelta(hours=1))
    _activate_in_keycloak(services, replayed.user_id)
    cases["used code (account active)"] = details(replayed)

    used = fresh("x")
    _set_code(services, used.user_id, used_at=now - timedelta(hours=1))
    cases["used code (account pending)"] = details(used)

    revoked = fresh("r")
    with services.sessions.begin() as db:
        assert revoke_codes(db, revoked.user_id) == 1
    cases["revoked code"] = details(revoked)

    active = fresh("a")  # its code unused: the account became active some other way
    _activate_in_keycloak(services, active.user_id)
    cases["already active account"] = details(active)

    mismatches = {case: attempt(live_url, sent) for case, sent in cases.items()}
    _same(mismatches)
    generic = next(iter(mismatches.values()))
    assert generic.status == 400
    assert MISMATCH in generic.body
    assert "Too many attempts" not in generic.body

    # Locked: an ID that exists and one that does not, locked by five wrong tries.
    held = fresh("k")
    _lock(live_url, held)
    ghost_id = f"zz{secrets.token_hex(3)[:5]}"
    _lock(live_url, held, user_id=ghost_id)
    locked = {
        "locked ID, right details": attempt(live_url, details(held)),
        "locked ID, wrong details": attempt(live_url, details(held, id_last4="0000")),
        "locked ID that does not exist": attempt(live_url, details(held, user_id=ghost_id)),
    }
    _same(locked)
    lock = next(iter(locked.values()))
    assert lock.status == 429
    [sentence] = LOCKED.findall(lock.body)
    # Beside the mismatch answer: only the status and that one sentence differ.
    assert lock.headers == generic.headers
    assert (lock.cookies_set, lock.cookies_held) == (generic.cookies_set, generic.cookies_held)
    assert lock.body.replace(sentence, MISMATCH) == generic.body
