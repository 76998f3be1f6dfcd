"""Step 2, policies, on a flow put at it: every policy accepted by its own box."""

from __future__ import annotations

import html
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from provider.i18n import LANGUAGE_COOKIE, LANGUAGES
from provider.keycloak import ACCEPTED_POLICIES, STATE_PENDING
from provider.policies import documents
from provider.services import Services
from provider.storage.models import AuditEvent
from tests.support.flow_at import FlowAt, StepClient
from tests.support.flow_client import StudentDetails
from tests.support.policies import current_policies, published


@pytest.fixture
def at_policies(flow_at: FlowAt, student: StudentDetails) -> StepClient:
    return flow_at("policies", student)


def _all_boxes(services: Services) -> dict[str, str]:
    return {p.field_name: "y" for p in current_policies(services)}


def test_the_page_shows_each_policy_with_its_own_box(
    at_policies: StepClient, services: Services
) -> None:
    page = at_policies.page("policies")
    assert page.status_code == 200
    body = html.unescape(page.get_data(as_text=True))
    assert "Step 2 of 5" in body
    policies = current_policies(services)
    assert policies
    for policy in policies:
        assert f'name="{policy.field_name}" type="checkbox"' in body
        # Seen: "I accept this policy" under its title; heard: which one, too.
        assert (
            'I accept this policy <span class="visually-hidden">'
            f"“{policy.title}” (version {policy.version})</span>" in body
        )
    assert 'name="csrf_token"' in body


def test_a_box_left_unchecked_is_named_and_nothing_is_accepted(
    at_policies: StepClient, student: StudentDetails, services: Services
) -> None:
    before = at_policies.flow().version
    last = current_policies(services)[-1]
    boxes = _all_boxes(services)
    del boxes[last.field_name]
    response = at_policies.submit("policies", boxes)
    assert response.status_code == 400
    body = html.unescape(response.get_data(as_text=True))
    assert f"Accept “{last.title}” to continue" in body
    assert body.count("to continue</") == 2  # by the box and in the summary: only that one
    state = at_policies.flow()
    assert (state.step, state.version) == ("policies", before)
    assert state.data is not None and state.data.accepted_policies == []
    user = services.keycloak.find_user(student.user_id)
    assert user is not None and user.activation_state == STATE_PENDING


def test_accepting_every_policy_records_each_version_and_moves_on(
    at_policies: StepClient, student: StudentDetails, services: Services
) -> None:
    started = datetime.now(UTC).replace(microsecond=0)
    response = at_policies.submit("policies", _all_boxes(services))
    assert response.status_code == 302 and response.location.endswith("/activate/contacts")
    state = at_policies.flow()
    assert state.step == "contacts" and state.data is not None
    records = state.data.accepted_policies
    assert [r.rsplit(":", 3)[0] for r in records] == [
        f"{p.id}@{p.version}" for p in current_policies(services)
    ]
    for record in records:
        at = datetime.fromisoformat(record.split(":", 1)[1].replace("Z", "+00:00"))
        assert started <= at <= datetime.now(UTC)
    # Written onto the account only when it is activated (the password step).
    user = services.keycloak.find_user(student.user_id)
    assert user is not None and user.activation_state == STATE_PENDING
    assert ACCEPTED_POLICIES not in user.attributes


def _shape(html_text: str) -> tuple[int, int]:
    return html_text.count("<h3>"), html_text.count("<li>")


@pytest.mark.parametrize("language", [lang for lang in LANGUAGES if lang != "en"])
def test_every_policy_reads_in_each_language_with_the_same_sections(language: str) -> None:
    for policy in (p for versions in documents().values() for p in versions):
        translated = policy.html_in(language)
        assert translated != policy.html, f"{policy.id} has no {language} body"
        assert _shape(translated) == _shape(policy.html), f"{policy.id} ({language})"


def test_the_page_shows_the_policies_in_the_students_language(at_policies: StepClient) -> None:
    at_policies.client.set_cookie(LANGUAGE_COOKIE, "pt")
    body = html.unescape(at_policies.page("policies").get_data(as_text=True))
    assert "Compromete-se a" in body and "Gabinete de Proteção de Dados" in body
    assert "You agree to" not in body


PASSWORD = "lantern orbit velvet meadow 42"


def _audited(services: Services, user_id: str) -> list[str]:
    with services.reads() as db:
        query = select(AuditEvent.action).where(AuditEvent.subject == user_id)
        return list(db.scalars(query.order_by(AuditEvent.id)))


def test_a_version_published_while_the_student_is_further_on_is_accepted_before_activation(
    flow_at: FlowAt, student: StudentDetails, services: Services
) -> None:
    flow = flow_at("password", student)  # accepted it-acceptable-use@2026-09 on the way
    with published(services, "it-acceptable-use", "2027-01"):
        # A later page is shown as it is; its submit goes back to the policies first, before
        # the step runs (nothing is written to the account).
        assert flow.client.get("/activate/password").status_code == 200
        assert flow.flow().step == "password"
        response = flow.submit("password", {"password": PASSWORD, "confirm": PASSWORD})
        assert response.status_code == 302 and response.location.endswith("/activate/policies")
        assert flow.flow().step == "policies"
        assert _audited(services, student.user_id)[-1] == "step.policies.reopened"
        body = html.unescape(flow.page("policies").get_data(as_text=True))
        assert "A new version of a campus IT policy was published" in body
        assert "What changed since version 2026-09, which you accepted" in body
        assert "Version 2027-01:" in body and "two-step sign-in" in body
        assert "version 2027-01" in body
        response = flow.submit("policies", _all_boxes(services))
        assert response.location.endswith("/activate/contacts")
        keys = [r.rsplit(":", 3)[0] for r in flow.flow().data.accepted_policies]
        assert "it-acceptable-use@2027-01" in keys and "it-acceptable-use@2026-09" not in keys
        # Holds now: the next step is shown as it is.
        assert flow.client.get("/activate/contacts").status_code == 200


def test_a_student_who_never_accepted_sees_no_change_summary(
    at_policies: StepClient, services: Services
) -> None:
    with published(services, "it-acceptable-use", "2027-01"):
        body = html.unescape(at_policies.page("policies").get_data(as_text=True))
    assert "version 2027-01" in body and "What changed since" not in body
