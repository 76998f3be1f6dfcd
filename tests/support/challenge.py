"""The identify page's proof-of-work check, from the test's side: make a typed user ID hot
(locked twice in a row, the second lock just over) and solve a page's challenge with the
`altcha` package's own solver, as the widget would."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime, timedelta

import altcha
from flask import Flask
from sqlalchemy import update
from werkzeug.test import TestResponse

from provider.services import Services
from provider.storage.models import IdentifyLockout
from tests.support.flow_client import FlowClient, StudentDetails

_CHALLENGE = re.compile(r'<altcha-widget challenge="([^"]+)"')


def end_lock(services: Services, key: str, ago: timedelta = timedelta(seconds=1)) -> None:
    """The typed ID's lock ran out `ago`, as if the test had waited."""
    with services.sessions.begin() as db:
        db.execute(
            update(IdentifyLockout)
            .where(IdentifyLockout.user_id == key)
            .values(locked_until=datetime.now(UTC) - ago)
        )


def lock(app: Flask, who: StudentDetails, last: FlowClient, **typed: str) -> TestResponse:
    """Five wrong attempts for the typed ID; the sixth (by `last`), refused while locked,
    is returned."""
    for _ in range(5):
        wrong = FlowClient(app.test_client()).identify(who, **{"id_last4": "0000", **typed})
        assert wrong.status_code == 400
    return last.identify(who, **typed)


def make_hot(
    app: Flask, services: Services, who: StudentDetails, browser: FlowClient, **typed: str
) -> TestResponse:
    """Lock the typed ID twice in a row and let the second lock run out. `browser` made
    the attempt refused during the second lock, whose page is returned."""
    key = typed.get("user_id", who.user_id).lower()
    assert lock(app, who, FlowClient(app.test_client()), **typed).status_code == 429
    end_lock(services, key)
    locked = lock(app, who, browser, **typed)
    assert locked.status_code == 429
    end_lock(services, key)
    return locked


def challenge_of(page: TestResponse) -> altcha.Challenge | None:
    match = _CHALLENGE.search(page.get_data(as_text=True))
    return altcha.Challenge.from_dict(json.loads(html.unescape(match.group(1)))) if match else None


def solve(page: TestResponse) -> str:
    """The payload the widget would put in the form's `altcha` field."""
    challenge = challenge_of(page)
    assert challenge is not None, "the page carries no challenge"
    solution = altcha.solve_challenge(challenge, timeout=60)
    assert solution is not None
    return altcha.Payload(challenge, solution).to_base64()
