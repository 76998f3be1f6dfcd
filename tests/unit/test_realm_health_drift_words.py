"""The drift on the realm-health page is in the reader's language: the check stores each
change in parts (action, item, name, part, old, new; apply's `why` as English), and the
page words a sentence per action around the item's phrase, in English, Traditional
Chinese or Portuguese. A row stored before the parts were still shows (the plan's English
subject under the translated label). The JSON keeps the plan's keys and adds the parts.

The page is served by the real app on SQLite with stored rows; the staff member is set
on the request (signing in needs Keycloak: tests/browser/test_realm_health_page.py).
"""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, g
from flask.testing import FlaskClient

from keycloak_config.plan import ITEMS, Change
from provider import create_app
from provider.config import load_settings
from provider.realm_health.drift import DriftItem
from provider.realm_health.report import HealthReport
from provider.realm_health.texts import DRIFT_ACTIONS, DRIFT_ITEMS
from provider.services import services
from provider.storage import migrate
from provider.storage.models import RealmHealthCheck

ROOT = Path(__file__).resolve().parents[2]
# Where apply's writes are made (uninstall's are never drift).
APPLY_MODULES = ("keycloak_config/applier.py", "keycloak_config/student_permissions.py")

BINDING = Change(
    "change",
    "browserFlow binding",
    "browser",
    "umpass browser",
    "was 'browser'",
    item="binding",
    name="browserFlow",
)
SETTING = Change(
    "change",
    "duplicateEmailsAllowed",
    "True",
    "False",
    "one account per email",
    item="setting",
    name="duplicateEmailsAllowed",
)
SCOPE = Change(
    "add",
    "scope of umpass-helpdesk: roles activation-admin",
    item="client-scope",
    name="umpass-helpdesk",
    part="activation-admin",
)
# As the check stored drift before it kept the parts.
OLD_ROW_DRIFT = {
    "action": "change",
    "subject": "user-profile attribute activation_state",
    "detail": "the realm declared it; the extension needs it admin-only and validated",
}


def _report(*changes: Change) -> dict[str, Any]:
    report = HealthReport("uni", datetime.now(UTC), [], [DriftItem.of(c) for c in changes])
    return report.as_json()


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    settings = load_settings(
        {
            "UMPASS_KC_CLIENT_SECRET": "x",
            "UMPASS_TESTING": "1",
            "UMPASS_HELPDESK_CLIENT_SECRET": "h" * 32,
            "DATABASE_URL": f"sqlite:///{tmp_path}/t.db",
        }
    )
    app = create_app(settings)
    migrate.upgrade(services(app).engine)

    @app.before_request
    def an_it_admin() -> None:
        # What staff() would have read from the realm for a signed-in IT admin.
        g.umpass_staff = {"username": "it-admin", "roles": ["activation-admin"]}

    return app


def _store(app: Flask, result: dict[str, Any]) -> None:
    with services(app).sessions.begin() as db:
        db.add(
            RealmHealthCheck(
                checked_at=datetime.now(UTC),
                realm="uni",
                readable=True,
                healthy=False,
                drift_items=len(result["drift"]),
                failed_checks=0,
                problems=[],
                told=[],
                result=result,
            )
        )


def _drift_lines(client: FlaskClient, language: str) -> list[str]:
    client.get(f"/language/{language}?next=/")
    page = client.get("/helpdesk/realm-health").get_data(as_text=True)
    block = re.search(r'<ol class="health-drift" id="drift">(.*?)</ol>', page, re.S)
    assert block, page
    return [re.sub(r"\s+", " ", li) for li in re.findall(r"<li[^>]*>(.*?)</li>", block[1], re.S)]


@pytest.mark.parametrize(
    ("language", "binding", "setting", "scope"),
    [
        (
            "zh_Hant",
            "已被更改：apply 會還原綁定為 <code>browserFlow</code> 的流程。",
            "已被更改：apply 會還原設定 <code>duplicateEmailsAllowed</code>。",
            "缺少：apply 會加入用戶端 <code>umpass-helpdesk</code> 權杖中的 realm 角色 "
            "<code>activation-admin</code>。",
        ),
        (
            "pt",
            "Alterado: o apply reporia o fluxo associado a <code>browserFlow</code>.",
            "Alterado: o apply reporia a definição <code>duplicateEmailsAllowed</code> do realm.",
            "Em falta: o apply adicionaria os papéis do realm <code>activation-admin</code> "
            "nos tokens do cliente <code>umpass-helpdesk</code>.",
        ),
        (
            "en",
            "Changed: apply would put back the flow bound as <code>browserFlow</code>.",
            "Changed: apply would put back the realm setting <code>duplicateEmailsAllowed</code>.",
            "Missing: apply would add the realm roles <code>activation-admin</code> in the "
            "tokens of client <code>umpass-helpdesk</code>.",
        ),
    ],
    ids=["zh_Hant", "pt", "en"],
)
def test_a_drift_line_reads_in_the_pages_language(
    app: Flask, language: str, binding: str, setting: str, scope: str
) -> None:
    _store(app, _report(BINDING, SETTING, SCOPE))
    lines = _drift_lines(app.test_client(), language)
    assert len(lines) == 3
    assert lines[0].startswith(binding), lines[0]
    assert "<code>browser</code> → <code>umpass browser</code>" in lines[0]
    assert '<span class="health-why" lang="en">(was &#39;browser&#39;)</span>' in lines[0]
    assert lines[1].startswith(setting), lines[1]
    assert lines[2] == scope  # no values, no why: the sentence alone
    if language != "en":  # the plan's English subject is not the line
        assert not any("binding" in line or "apply would" in line for line in lines)


@pytest.mark.parametrize(
    ("language", "label"),
    [("zh_Hant", "已被更改，會被還原"), ("pt", "Alterado, seria reposto")],
)
def test_a_row_stored_before_the_parts_still_shows(app: Flask, language: str, label: str) -> None:
    _store(app, {"realm": "uni", "error": None, "checks": [], "drift": [OLD_ROW_DRIFT]})
    [line] = _drift_lines(app.test_client(), language)
    assert line.startswith(f"<strong>{label}:</strong> ")
    assert "<code>user-profile attribute activation_state</code>" in line
    assert '<span class="health-why" lang="en">— the realm declared it;' in line


def test_an_item_this_version_does_not_word_shows_the_plans_english(app: Flask) -> None:
    future = {**OLD_ROW_DRIFT, "item": "something-new", "name": "x", "why": "later"}
    _store(app, {"realm": "uni", "checks": [], "drift": [future]})
    [line] = _drift_lines(app.test_client(), "pt")
    assert "<code>user-profile attribute activation_state</code>" in line


def test_the_json_keeps_the_plans_keys_and_adds_the_parts() -> None:
    [binding, scope] = _report(BINDING, SCOPE)["drift"]
    assert binding == {
        "action": "change",
        "subject": "browserFlow binding",
        "detail": "browser → umpass browser — was 'browser'",
        "item": "binding",
        "name": "browserFlow",
        "part": None,
        "old": "browser",
        "new": "umpass browser",
        "why": "was 'browser'",
    }
    assert (scope["item"], scope["part"], scope["old"], scope["why"]) == (
        "client-scope",
        "activation-admin",
        None,
        None,
    )


def test_every_item_and_write_action_has_words() -> None:
    assert set(DRIFT_ITEMS) == ITEMS
    assert set(DRIFT_ACTIONS) == {"add", "raise", "change", "remove"}


def _changes(path: str) -> list[ast.Call]:
    """The Change(...) calls of `path`, but for uninstall's (remove_* functions)."""
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    uninstall = {
        id(node)
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef) and function.name.startswith("remove_")
        for node in ast.walk(function)
    }
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) == "Change"
        and id(node) not in uninstall
    ]


@pytest.mark.parametrize("path", APPLY_MODULES)
def test_every_write_apply_makes_names_its_item(path: str) -> None:
    """A new write without its parts would reach the page in English only."""
    calls = _changes(path)
    assert calls
    for call in calls:
        words = {k.arg: k.value for k in call.keywords}
        item = words.get("item")
        where = f"{path}:{call.lineno}"
        assert isinstance(item, ast.Constant) and item.value in ITEMS, where
        assert item.value == "password-policy" or "name" in words, where


def test_the_realms_names_are_escaped(app: Flask) -> None:
    """Names come from the realm (anyone with manage-realm names a flow)."""
    flow = Change("add", "flow <b>x</b>", item="flow", name="<b>x</b>", why="<i>y</i>")
    _store(app, _report(flow))
    [line] = _drift_lines(app.test_client(), "pt")
    assert line.startswith(
        "Em falta: o apply adicionaria o fluxo <code>&lt;b&gt;x&lt;/b&gt;</code>."
    )
    assert "<b>" not in line and "<i>" not in line
