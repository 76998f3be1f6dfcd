"""The whole recovery, as a student would walk it (one test per way out)."""

from __future__ import annotations

from tests.support.flow_client import StudentDetails
from tests.support.inbox import Inbox
from tests.support.recovery import RecoveryClient


def test_a_new_password_by_email_code(
    browser: RecoveryClient, inbox: Inbox, active_student: StudentDetails
) -> None:
    before = len(inbox.mails_to(active_student.email))
    started = browser.start(active_student.user_id, "email")
    assert started.status_code == 302, started.get_data(as_text=True)
    assert started.headers["Location"].endswith("/recover/code")
    code = inbox.email_code(active_student.email, after=before)
    proven = browser.code(code)
    assert proven.status_code == 302, proven.get_data(as_text=True)
    assert proven.headers["Location"].endswith("/recover/choose")
    chosen = browser.post("choose", {"choice": "password"})
    assert chosen.headers["Location"].endswith("/recover/new-password")
    done = browser.post(
        "new-password",
        {"password": "quiet harbour 4417 kite", "confirm": "quiet harbour 4417 kite"},
    )
    assert done.status_code == 302, done.get_data(as_text=True)
    assert done.headers["Location"].endswith("/recover/finished")
    page = browser.get("finished").get_data(as_text=True)
    assert "Your password is changed" in page
