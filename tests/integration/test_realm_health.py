"""Realm health against the real Keycloak. `umpass realm-check` (the timer's command, the
only holder of the monitor's secret) reads the realm and stores the result; the page,
the JSON and the gauges show the latest stored result and never read the realm.

Drift made by hand through the admin API is red in the JSON and the gauges once the
check has run, and green after `apply` and another run; a result older than the limit,
and no result at all, are red; the command mails (through the real SMTP inbox) once per
new problem; the web service starts and serves with no monitor secret at all.

The drift is the three an IT admin meets most: the browser flow bound back to Keycloak's
own `browser`, duplicate emails switched on, and `activation_state` made user-editable in
the user profile.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from devstack.background import serve_on_a_free_port
from flask.testing import FlaskClient
from keycloak import KeycloakAdmin

from keycloak_config.apply import apply_realm
from tests.conftest import METRICS_TOKEN, RealmUnderTest
from tests.support.cli import run_module
from tests.support.inbox import Inbox
from tests.support.realm_changes import RealmChanges
from tests.support.realm_check import RealmCheck
from tests.support.realm_drift import HAND_MADE, make_hand_drift

BEARER = {"Authorization": f"Bearer {METRICS_TOKEN}"}
MONITOR_SECRET = "UMPASS_KC_MONITOR_SECRET"


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


def test_a_freshly_applied_realm_is_all_green(client: FlaskClient, realm_check: RealmCheck) -> None:
    assert realm_check()[0] == 0
    report = _report(client)
    assert report["status"] == "ok"
    assert report["stale"] is False
    assert report["error"] is None
    assert _red(report) == set()
    assert len(report["checks"]) >= 9
    assert report["drift"] == []
    assert report["healthy"] is True
    gauges = _gauges(client)
    assert gauges.pop("umpass_realm_check_age_seconds") < 60
    assert gauges == {
        "umpass_realm_check_up": 1.0,
        "umpass_realm_drift_items": 0.0,
        "umpass_realm_failed_checks": 0.0,
    }


def test_drift_by_hand_is_red_once_checked_until_apply_and_the_next_check(
    client: FlaskClient,
    realm: RealmUnderTest,
    admin: KeycloakAdmin,
    realm_changes: RealmChanges,
    realm_check: RealmCheck,
) -> None:
    realm_check()
    make_hand_drift(admin, realm.name, realm_changes)
    # The web service shows what was stored, never the live realm: green until the check.
    assert _report(client)["status"] == "ok"

    assert realm_check()[0] == 1
    report = _report(client)
    assert report["status"] == "needs-repair"
    assert _red(report) == HAND_MADE
    found = {c["key"]: c["found"] for c in report["checks"] if not c["ok"]}
    assert found["browser-flow"] == "browserFlow = 'browser'"
    assert found["duplicate-emails-off"] == "duplicateEmailsAllowed = True"
    assert "user" in found["activation-state-admin-only"]
    subjects = [(d["action"], d["subject"]) for d in report["drift"]]
    assert ("change", "browserFlow binding") in subjects
    assert ("change", "duplicateEmailsAllowed") in subjects
    assert ("change", "user-profile attribute activation_state") in subjects
    # In parts too, for the page to word each line in its reader's language.
    parts = [(d["action"], d["item"], d["name"]) for d in report["drift"]]
    assert ("change", "binding", "browserFlow") in parts
    assert ("change", "setting", "duplicateEmailsAllowed") in parts
    assert ("change", "profile-attribute", "activation_state") in parts
    assert all(d["item"] for d in report["drift"]), report["drift"]
    assert report["healthy"] is False
    gauges = _gauges(client)
    assert gauges["umpass_realm_check_up"] == 1.0
    assert gauges["umpass_realm_failed_checks"] == 3.0
    assert gauges["umpass_realm_drift_items"] == len(report["drift"]) >= 3

    apply_realm(realm.options)
    assert _report(client)["status"] == "needs-repair"  # until the next run
    assert realm_check()[0] == 0
    report = _report(client)
    assert report["status"] == "ok"
    assert _red(report) == set()
    assert report["drift"] == []
    assert _gauges(client)["umpass_realm_drift_items"] == 0.0


def test_a_stale_result_and_no_result_are_red(client: FlaskClient, realm_check: RealmCheck) -> None:
    """Default limit 20 minutes (the documented timer runs every 5)."""
    realm_check()
    realm_check.age_all(timedelta(minutes=19))
    assert _report(client)["status"] == "ok"

    realm_check.age_all(timedelta(minutes=2))  # 21 minutes old
    report = _report(client)
    assert report["status"] == "stale"
    assert report["stale"] is True
    assert report["healthy"] is False
    assert report["message"] == f"Not checked since {report['checked_at']}"
    assert report["age_seconds"] >= 21 * 60
    assert report["stale_after_seconds"] == 20 * 60
    gauges = _gauges(client)
    assert gauges["umpass_realm_check_up"] == 0.0
    assert gauges["umpass_realm_check_age_seconds"] >= 21 * 60
    assert "umpass_realm_drift_items" not in gauges

    realm_check.forget_all()
    report = _report(client)
    assert report["status"] == "never-checked"
    assert report["healthy"] is False
    assert report["checked_at"] is None
    assert report["message"] == "Never checked: run umpass realm-check"
    assert _gauges(client) == {"umpass_realm_check_up": 0.0}

    realm_check()
    assert _report(client)["status"] == "ok"


def test_json_and_gauges_need_the_metrics_token(client: FlaskClient) -> None:
    assert client.get("/metrics/realm-health").status_code == 404
    wrong = {"Authorization": "Bearer " + "x" * len(METRICS_TOKEN)}
    assert client.get("/metrics/realm-health", headers=wrong).status_code == 404


def test_the_command_exits_1_on_drift_and_mails_once_per_new_problem(
    monitor_env: dict[str, str],
    realm: RealmUnderTest,
    admin: KeycloakAdmin,
    realm_changes: RealmChanges,
    realm_check: RealmCheck,
    inbox: Inbox,
) -> None:
    """The command line as the timer runs it, each run a fresh process: the previous
    stored result, not a file, decides what is new."""
    to = f"it-{secrets.token_hex(3)}@example.edu"
    env = {**monitor_env, "UMPASS_REALM_ALERT_EMAIL": to}

    def check() -> subprocess.CompletedProcess[str]:
        return run_module("provider.cli", env, "realm-check")

    assert check().returncode == 0  # a healthy result stored: nothing told yet
    make_hand_drift(admin, realm.name, realm_changes)
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


def test_the_command_refuses_without_the_monitor_secret(service_env: dict[str, str]) -> None:
    result = run_module("provider.cli", service_env, "realm-check")
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {MONITOR_SECRET} is not set")


def test_the_web_service_starts_and_serves_with_no_monitor_secret(
    service_env: dict[str, str], realm_check: RealmCheck, tmp_path: Path
) -> None:
    """`umpass serve` as deployed, its environment without the monitor's secret: the JSON
    is the stored result, the page is there (behind the staff sign-in)."""
    assert MONITOR_SECRET not in service_env and MONITOR_SECRET not in os.environ
    realm_check()
    # `umpass serve` on a free port, once its /healthz answers (the benchmarks' launcher).
    server = serve_on_a_free_port(tmp_path / "serve.log", service_env, threads=2)
    try:
        base = server.direct_url
        report = requests.get(f"{base}/metrics/realm-health", headers=BEARER, timeout=10)
        assert report.status_code == 200
        assert report.json()["status"] == "ok"
        page = requests.get(f"{base}/helpdesk/realm-health", allow_redirects=False, timeout=10)
        assert page.status_code == 302  # to the staff sign-in: the page exists, no error
    finally:
        server.stop()


def test_a_redirector_sending_everyone_away_on_top_of_the_flow_is_red(
    client: FlaskClient, realm: RealmUnderTest, admin: KeycloakAdmin, realm_check: RealmCheck
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

    realm_check()
    report = _report(client)
    assert _red(report) == {"no-redirector-on-top"}
    found = next(c["found"] for c in report["checks"] if c["key"] == "no-redirector-on-top")
    assert "identity-provider-redirector to umpass-activation" in found
    assert ("change", "flow umpass browser") in [
        (d["action"], d["subject"]) for d in report["drift"]
    ]

    apply_realm(realm.options)  # a new copy of the flow, bound; the edited one deleted
    realm_check()
    report = _report(client)
    assert _red(report) == set()
    assert report["drift"] == []
