"""The proof-of-work check on identify for a typed user ID locked twice in a row, through
the web layer against the real Keycloak: without a solved challenge (missing, garbage,
forged, expired or replayed) the attempt gets the uniform failure, counted like any
mismatch; with one, the right details get through; an unknown ID looks the same; and
without JavaScript the student waits the check out."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta

import altcha
import pytest
from flask import Flask
from sqlalchemy import select
from werkzeug.test import TestResponse

from provider.date_input import form_fields
from provider.guards import challenge as challenges
from provider.keyed_hash import Purpose
from provider.services import Services
from provider.storage.models import AuditEvent, IdentifyLockout
from tests.support.challenge import challenge_of, end_lock, make_hot, solve
from tests.support.flow_client import FlowClient, StudentDetails, csrf_token
from tests.support.students import enrol_student

UNIFORM = "We could not match those details"


def _post(
    flow: FlowClient, who: StudentDetails, payload: str | None = None, **overrides: str
) -> TestResponse:
    """One identify submit from the page this browser is shown. (Every refusal is padded to
    the failure floor like any mismatch: tests/unit/test_identify_floor.py, on a clock the
    test drives; scripts/bench identify-uniformity times the real POST.)"""
    page = flow.page("identify")
    data = {
        "csrf_token": csrf_token(page),
        "user_id": who.user_id,
        "activation_code": who.code,
        **form_fields(who.date_of_birth),
        "id_last4": who.id_last4,
        **overrides,
    }
    if payload is not None:
        data["altcha"] = payload
    return flow.client.post("/activate/identify", data=data)


def _normalised(response: TestResponse, *typed_ids: str) -> str:
    body = response.get_data(as_text=True)
    body = re.sub(r'name="csrf_token" type="hidden" value="[^"]+"', "", body)
    body = re.sub(r'<altcha-widget challenge="[^"]+"', "<altcha-widget", body)
    body = re.sub(r'value="[^"]*"', "", body)
    for typed in typed_ids:
        body = body.replace(typed, "")
    return body


def _failures(services: Services, key: str) -> tuple[int, int]:
    with services.sessions() as db:
        row = db.get(IdentifyLockout, key)
    assert row is not None
    return row.failures, row.lock_count


def _forged(services: Services, *, key: bytes | None = None, expired: bool = False) -> str:
    """A solved challenge this service did not issue (another key), or one it did that
    has expired."""
    signing = key or services.hasher.subkey(Purpose.CHALLENGE_SIGNATURE)
    solution_key = key or services.hasher.subkey(Purpose.CHALLENGE_SOLUTION)
    expires = datetime.now(UTC) + (timedelta(seconds=-5) if expired else challenges.LIFETIME)
    made = altcha.create_challenge(
        challenges.ALGORITHM,
        challenges.COST,
        counter=50,
        expires_at=int(expires.timestamp()),
        hmac_secret=signing,
        hmac_key_secret=solution_key,
    )
    solution = altcha.solve_challenge(made)
    assert solution is not None
    return altcha.Payload(made, solution).to_base64()


@pytest.fixture
def student(services: Services) -> StudentDetails:
    return enrol_student(services, "p")


def test_locked_twice_the_page_carries_the_check_and_says_how_to_do_without(
    app: Flask, services: Services, student: StudentDetails
) -> None:
    browser = FlowClient(app.test_client())
    locked = make_hot(app, services, student, browser)
    text = locked.get_data(as_text=True)
    assert "Too many attempts for this user ID" in text
    assert "After the wait, this form will also ask your browser" in text  # said up front
    assert challenge_of(locked) is None  # nothing to solve while locked
    # The lock is over: this browser's next form carries the check and its plain way out.
    page = browser.page("identify")
    assert page.status_code == 200
    assert challenge_of(page) is not None
    assert "Without JavaScript the check cannot run: then try again in" in (
        page.get_data(as_text=True)
    )
    assert 'src="/static/vendor/altcha/altcha.min.js"' in page.get_data(as_text=True)
    # A browser that never met the lock gets the plain form, as anyone does.
    assert challenge_of(FlowClient(app.test_client()).page("identify")) is None


def test_no_bad_or_replayed_solution_gets_through_and_each_counts(
    app: Flask, services: Services, student: StudentDetails
) -> None:
    browser = FlowClient(app.test_client())
    make_hot(app, services, student, browser)
    key = student.user_id
    used = solve(browser.page("identify"))
    answers = {}
    # A valid solution with a wrong detail: an ordinary mismatch (and the solution is spent).
    answers["mismatch"] = _post(browser, student, used, id_last4="0000")
    assert _failures(services, key) == (1, 2)
    # All four details right from here on.
    answers["no solution"] = _post(browser, student)
    assert _failures(services, key) == (2, 2)
    answers["garbage"] = _post(browser, student, "bm90IGEgc29sdXRpb24=")
    assert _failures(services, key) == (3, 2)
    answers["replayed"] = _post(browser, student, used)
    assert _failures(services, key) == (4, 2)
    first = _normalised(answers["mismatch"])
    for name, answer in answers.items():
        assert answer.status_code == 400, name
        assert UNIFORM in answer.get_data(as_text=True), name
        assert challenge_of(answer) is not None, name  # a fresh check for the next try
        assert _normalised(answer) == first, name
    # The fifth in a row locks the ID a third time, as any failure would.
    forged = _post(browser, student, _forged(services, key=b"not-our-key-" * 4))
    assert forged.status_code == 400
    assert _failures(services, key) == (0, 3)
    with services.sessions() as db:
        reasons = db.scalars(
            select(AuditEvent.detail).where(
                AuditEvent.subject == key, AuditEvent.action == "identify.failed"
            )
        ).all()
    assert [r.get("reason") for r in reasons].count("challenge") == 4


def test_a_solved_check_lets_the_right_details_through(
    app: Flask, services: Services, student: StudentDetails
) -> None:
    browser = FlowClient(app.test_client())
    make_hot(app, services, student, browser)
    expired = _post(browser, student, _forged(services, expired=True))
    assert expired.status_code == 400
    answer = _post(browser, student, solve(browser.page("identify")))
    assert answer.status_code == 302, answer.get_data(as_text=True)[:500]
    assert answer.location.endswith("/activate/policies")
    with services.sessions() as db:  # a success ends the run of locks
        row = db.get(IdentifyLockout, student.user_id)
        assert row is not None and row.lock_count == 0 and row.locked_until is None


def test_an_unknown_id_locked_twice_looks_the_same_as_a_known_one(
    app: Flask, services: Services, student: StudentDetails
) -> None:
    ghost = f"zz{secrets.token_hex(3)[:5]}"
    known_browser, ghost_browser = FlowClient(app.test_client()), FlowClient(app.test_client())
    known_locked = make_hot(app, services, student, known_browser)
    ghost_locked = make_hot(app, services, student, ghost_browser, user_id=ghost)
    assert known_locked.status_code == ghost_locked.status_code == 429
    ids = (student.user_id, ghost)
    assert _normalised(known_locked, *ids) == _normalised(ghost_locked, *ids)
    known_page, ghost_page = known_browser.page("identify"), ghost_browser.page("identify")
    assert known_page.status_code == ghost_page.status_code == 200
    assert challenge_of(known_page) is not None and challenge_of(ghost_page) is not None
    assert _normalised(known_page, *ids) == _normalised(ghost_page, *ids)
    known = _post(known_browser, student)
    unknown = _post(ghost_browser, student, user_id=ghost)
    assert known.status_code == unknown.status_code == 400
    assert _normalised(known, *ids) == _normalised(unknown, *ids)
    assert challenge_of(known) is not None and challenge_of(unknown) is not None


def test_without_javascript_the_student_waits_the_check_out(
    app: Flask, services: Services, student: StudentDetails
) -> None:
    browser = FlowClient(app.test_client())
    make_hot(app, services, student, browser)
    refused = _post(browser, student)  # a no-JS form sends no solution
    assert refused.status_code == 400 and UNIFORM in refused.get_data(as_text=True)
    # The way out, said plainly: an hour after the lock ended (just now).
    assert "then try again in 60 minutes, when it is no longer needed" in (
        refused.get_data(as_text=True)
    )
    # The hour after the lock is over (as if the student waited): no check any more.
    end_lock(services, student.user_id, ago=timedelta(minutes=61))
    answer = _post(browser, student)
    assert answer.status_code == 302 and answer.location.endswith("/activate/policies")
