"""The console's policy pages against the real realm's staff sign-in: only activation-admin
sees them; publishing needs the CSRF token and a second "yes", and is audited under the
admin's name; the evidence CSV of a version lists user ID, version and time, formula-safe."""

from __future__ import annotations

import csv
import io
import re

import pytest
import requests
from sqlalchemy import select

from provider.policies import evidence
from provider.policies.published import current_versions
from provider.services import Services
from provider.storage.models import AuditEvent
from tests.support.console import Console, table_rows
from tests.support.policies import unpublished_after
from tests.support.realm_changes import RealmChanges

pytestmark = pytest.mark.keycloak
PUBLISH = "/helpdesk/policies/it-acceptable-use/2027-01/publish"
CSV = "/helpdesk/policies/privacy-notice/2026-08.csv"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(scope="module")
def staff(module_staff: RealmChanges) -> tuple[str, str]:
    return (
        module_staff.add_staff("activation-admin").username,
        module_staff.add_staff("activation-helpdesk").username,
    )


def _token(console: Console, path: str = "/helpdesk/") -> str:
    found = _CSRF.search(console.get(path).text)
    assert found
    return found[1]


def _current(services: Services) -> str:
    with services.reads() as db:
        return current_versions(db)["it-acceptable-use"].policy.version


def _events(services: Services, action: str) -> list[AuditEvent]:
    with services.reads() as db:
        return list(db.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_publishing_from_the_console_asks_twice_needs_csrf_and_is_audited(
    live_url: str, services: Services, staff: tuple[str, str]
) -> None:
    admin_name, _desk = staff
    console = Console(live_url, admin_name)
    rows = table_rows(console.get("/helpdesk/policies/").text, "timeline")
    assert [r.cells[0] for r in rows][:2] == ["2027-01", "2026-09"]
    with unpublished_after(services, "it-acceptable-use", "2027-01"):
        refused = console.session.post(live_url + PUBLISH, data={"confirm": "yes"}, timeout=30)
        assert refused.status_code == 400 and _current(services) == "2026-09"  # no CSRF token
        asked = console.session.post(
            live_url + PUBLISH, data={"csrf_token": _token(console)}, timeout=30
        )
        assert asked.status_code == 200 and "Yes, publish it" in asked.text
        assert _current(services) == "2026-09"  # the question publishes nothing
        done = console.session.post(
            live_url + PUBLISH,
            data={"csrf_token": _token(console), "confirm": "yes"},
            timeout=30,
        )
        assert done.status_code == 200 and "is published" in done.text
        assert _current(services) == "2027-01"
        mine = [e for e in _events(services, "policy.published") if e.actor.endswith(admin_name)]
        (event,) = mine
        assert event.actor == f"staff:{admin_name}"
        assert event.detail == {"policy": "it-acceptable-use", "version": "2027-01"}


def test_the_evidence_csv_is_one_row_per_student_formula_safe_and_audited(
    live_url: str, services: Services, staff: tuple[str, str]
) -> None:
    admin_name, _desk = staff
    with services.sessions.begin() as db:
        evidence.record(db.connection(), "pe00001", ["privacy-notice@2026-08:2026-12-01T08:00:00Z"])
        evidence.record(db.connection(), "=1+2", ["privacy-notice@2026-08:2026-12-01T09:00:00Z"])
    answer = Console(live_url, admin_name).get(CSV)
    assert answer.headers["Content-Type"].startswith("text/csv")
    assert answer.headers["Cache-Control"] == "no-store"
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert rows[0] == ["user_id", "version", "accepted_at"]
    assert ["pe00001", "privacy-notice@2026-08", "2026-12-01T08:00:00Z"] in rows
    assert ["'=1+2", "privacy-notice@2026-08", "2026-12-01T09:00:00Z"] in rows  # not a formula
    assert any(
        e.actor == f"staff:{admin_name}" for e in _events(services, "policy.evidence_exported")
    )


def test_the_help_desk_role_is_refused_the_policy_pages(
    live_url: str, services: Services, staff: tuple[str, str]
) -> None:
    _admin, desk_name = staff
    for route in ("/helpdesk/policies/", CSV):
        answer = requests.get(live_url + route, allow_redirects=False, timeout=30)
        assert answer.status_code == 302 and answer.headers["Location"].endswith("/helpdesk/login")
    desk = Console(live_url, desk_name)
    for route in ("/helpdesk/policies/", CSV):
        assert desk.session.get(live_url + route, timeout=30).status_code == 403
    posted = desk.session.post(
        live_url + PUBLISH, data={"csrf_token": _token(desk), "confirm": "yes"}, timeout=30
    )
    assert posted.status_code == 403 and _current(services) == "2026-09"
