"""The web service never holds the realm monitor's secret (umpass-realm-monitor has
view-clients, which reads every client's secret, the provisioner's with manage-realm
too): its settings never read the variable, nothing it imports reads the realm, and only
the timer's command (provider/realm_health/{monitor,report,drift,checks,command}.py and
provider/cli.py) names it. The import-linter contract "web code does not reach the realm
monitor" (pyproject.toml) says the same of the import graph."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from provider.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
SECRET = "UMPASS_KC_MONITOR_SECRET"
# The modules only `umpass realm-check` runs.
JOB = {
    "provider/cli.py",
    "provider/realm_health/monitor.py",
    "provider/realm_health/report.py",
    "provider/realm_health/drift.py",
    "provider/realm_health/command.py",
    "provider/realm_health/checks.py",
}
# What reads the variable or builds the monitor's connection, by name.
READERS = (SECRET, "SECRET_VARIABLE", "load_monitor_settings", "monitor_api", "MonitorSettings")


class Spy(Mapping[str, str]):
    """An environment that records every name asked for."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env, self.asked = env, set[str]()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return self.env[key]

    def get(self, key: str, default=None):  # type: ignore[override]
        self.asked.add(key)
        return self.env.get(key, default)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return key in self.env

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("the settings must ask for names, not walk the environment")

    def __len__(self) -> int:
        return len(self.env)


def test_the_service_settings_never_read_the_monitor_secret(tmp_path: Path) -> None:
    env = Spy(
        {
            "UMPASS_KC_CLIENT_SECRET": "x",
            "UMPASS_TESTING": "1",
            "DATABASE_URL": f"sqlite:///{tmp_path}/t.db",
            SECRET: "monitor-secret-" + "m" * 24,
        }
    )
    settings = load_settings(env)
    assert SECRET not in env.asked
    assert "UMPASS_KC_CLIENT_SECRET" in env.asked  # the spy sees what is read
    assert "monitor-secret" not in repr(settings)


def test_only_the_timers_command_names_the_monitor_secret() -> None:
    named = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "provider").rglob("*")
        if path.suffix in {".py", ".html"}
        and any(word in path.read_text(encoding="utf-8") for word in READERS)
    }
    assert named <= JOB, f"outside the timer's command: {sorted(named - JOB)}"
    assert "provider/realm_health/monitor.py" in named


def test_the_app_does_not_import_what_reads_the_realm(tmp_path: Path) -> None:
    """create_app, with the console and metrics on and the secret even in its environment,
    loads no module that could read the realm as the monitor (a fresh interpreter)."""
    code = f"""
import os, sys
os.environ["{SECRET}"] = "monitor-secret-" + "m" * 24
from provider import create_app
from provider.config import load_settings
settings = load_settings({{
    "UMPASS_KC_CLIENT_SECRET": "x", "UMPASS_TESTING": "1",
    "UMPASS_HELPDESK_CLIENT_SECRET": "h" * 32, "UMPASS_METRICS_TOKEN": "t" * 32,
    "DATABASE_URL": "sqlite:///{tmp_path}/t.db",
}})
app = create_app(settings)
assert "realm_health.page" in app.view_functions, sorted(app.view_functions)
wanted = ("provider.realm_health", "keycloak_config")
loaded = sorted(m for m in sys.modules if m.startswith(wanted))
print(" ".join(loaded))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    assert "provider.realm_health.views" in loaded
    assert not loaded & {
        "provider.realm_health.monitor",
        "provider.realm_health.report",
        "provider.realm_health.drift",
        "provider.realm_health.checks",
        "provider.realm_health.command",
    }
    assert not {m for m in loaded if m.startswith("keycloak_config")}
