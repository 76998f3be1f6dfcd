"""Realm health against the real Keycloak: drift made by hand through the admin API shows
red in the JSON and the gauges, and `apply` turns every item green again; the scheduled
check exits 1 on drift and emails (through the real SMTP inbox) once per new problem.

The drift is the three an IT admin meets most: the browser flow bound back to Keycloak's
own `browser`, duplicate emails switched on, and `activation_state` made user-editable in
the user profile.
"""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask.testing import FlaskClient
from keycloak import KeycloakAdmin

from keycloak_config.apply import apply_realm
from tests.conftest import METRICS_TOKEN, RealmUnderTest
from tests.support.cli import run_module
from tests.support.inbox import Inbox
from tests.support.realm_changes import RealmChanges
from tests.support.realm_drift import HAND_MADE, make_hand_drift

BEARER = {"Authorization": f"Bearer {METRICS_TOKEN}"}


def _report(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/metrics/realm-health", headers=BEARER)
    assert response.status_code == 200
    return response.get_json()


def _gauges(client: FlaskClient) -> dict[str, float]:
    text = client.get("/metrics", headers=BEARER).get_data(as_text=True)
    return {
        name: float(value)
        for name, value in re.findall(r"^(umpass_realm_\w+) (\S+)$", text, re.MULTILINE)
    }


def _red(report: dict[str, Any]) -> set[str]:
    return {c["key"] for c in report["checks"] if not c["ok"]}


@pytest.fixture
def hand_made_drift(
    admin: KeycloakAdmin, realm: RealmUnderTest, realm_changes: RealmChanges
) -> None:
    make_hand_drift(admin, realm.name, realm_changes)


def test_a_freshly_applied_realm_is_all_green(client: FlaskClient) -> None:
    report = _report(client)
    assert report["error"] is None
    assert _red(report) == set()
    assert len(report["checks"]) >= 9
    assert report["drift"] == []
    assert report["healthy"] is True
    assert _gauges(client) == {
        "umpass_realm_check_up": 1.0,
        "umpass_realm_drift_items": 0.0,
        "umpass_realm_failed_checks": 0.0,
    }


def test_drift_by_hand_is_red_until_apply(
    client: FlaskClient, realm: RealmUnderTest, hand_made_drift: None
) -> None:
    report = _report(client)
    assert _red(report) == HAND_MADE
    found = {c["key"]: c["found"] for c in report["checks"] if not c["ok"]}
    assert found["browser-flow"] == "browserFlow = 'browser'"
    assert found["duplicate-emails-off"] == "duplicateEmailsAllowed = True"
    assert "user" in found["activation-state-admin-only"]
    subjects = [(d["action"], d["subject"]) for d in report["drift"]]
    assert ("change", "browserFlow binding") in subjects
    assert ("change", "duplicateEmailsAllowed") in subjects
    assert ("change", "user-profile attribute activation_state") in subjects
    assert report["healthy"] is False
    gauges = _gauges(client)
    assert gauges["umpass_realm_failed_checks"] == 3.0
    assert gauges["umpass_realm_drift_items"] == len(report["drift"]) >= 3

    apply_realm(realm.options)

    report = _report(client)
    assert _red(report) == set()
    assert report["drift"] == []
    assert _gauges(client)["umpass_realm_drift_items"] == 0.0


def test_json_and_gauges_need_the_metrics_token(client: FlaskClient) -> None:
    assert client.get("/metrics/realm-health").status_code == 404
    wrong = {"Authorization": "Bearer " + "x" * len(METRICS_TOKEN)}
    assert client.get("/metrics/realm-health", headers=wrong).status_code == 404


def test_scheduled_check_exits_1_on_drift_and_mails_once_per_new_problem(
    service_env: dict[str, str],
    realm: RealmUnderTest,
    inbox: Inbox,
    tmp_path: Path,
    hand_made_drift: None,
) -> None:
    to = f"it-{secrets.token_hex(3)}@example.edu"
    state = tmp_path / "realm-check.json"
    env = {**service_env, "UMPASS_REALM_ALERT_EMAIL": to}

    def check() -> Any:
        return run_module("provider.cli", env, "realm-check", "--state", str(state))

    first = check()
    assert first.returncode == 1, first.stderr
    assert "[Needs repair] Sign-in (browser) flow is the activation's" in first.stdout
    assert "alert emailed (" in first.stdout
    mails = inbox.mails_to(to)
    assert len(mails) == 1
    assert mails[0].message["Subject"] == f"UMPASS realm {realm.name} needs repair"
    assert "New: check:browser-flow" in mails[0].text
    assert "change browserFlow binding" in mails[0].text

    second = check()  # the same drift: no second email
    assert second.returncode == 1
    assert "no new problem: no email" in second.stdout
    assert len(inbox.mails_to(to)) == 1

    apply_realm(realm.options)
    healthy = check()
    assert healthy.returncode == 0, healthy.stdout
    assert len(inbox.mails_to(to)) == 1


def test_a_redirector_sending_everyone_away_on_top_of_the_flow_is_red(
    client: FlaskClient, realm: RealmUnderTest, admin: KeycloakAdmin
) -> None:
    """A redirector with a default provider added at the top of the bound browser flow (by
    hand, in place) is red until apply builds the flow anew; the realm's own redirector
    inside the flow, which only honours kc_idp_hint, stays green."""
    base = f"admin/realms/{realm.name}/authentication"
    alias = quote(admin.get_realm(realm.name)["browserFlow"], safe="")
    added = admin.connection.raw_post(
        f"{base}/flows/{alias}/executions/execution",
        data=json.dumps({"provider": "identity-provider-redirector"}),
    )
    assert added.status_code < 300, added.text
    steps = admin.connection.raw_get(f"{base}/flows/{alias}/executions").json()
    step = next(
        s
        for s in steps
        if s.get("level") == 0 and s.get("providerId") == "identity-provider-redirector"
    )
    config = {
        "alias": f"away-{secrets.token_hex(3)}",
        "config": {"defaultProvider": "umpass-activation"},
    }
    assert (
        admin.connection.raw_post(
            f"{base}/executions/{step['id']}/config", data=json.dumps(config)
        ).status_code
        < 300
    )
    assert (
        admin.connection.raw_put(
            f"{base}/flows/{alias}/executions",
            data=json.dumps({**step, "requirement": "ALTERNATIVE"}),
        ).status_code
        < 300
    )

    report = _report(client)
    assert _red(report) == {"no-redirector-on-top"}
    found = next(c["found"] for c in report["checks"] if c["key"] == "no-redirector-on-top")
    assert "identity-provider-redirector to umpass-activation" in found
    assert ("change", "flow umpass browser") in [
        (d["action"], d["subject"]) for d in report["drift"]
    ]

    apply_realm(realm.options)  # a new copy of the flow, bound; the edited one deleted
    report = _report(client)
    assert _red(report) == set()
    assert report["drift"] == []
