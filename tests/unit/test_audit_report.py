"""scripts/audit passes only when every locked package was checked and none has a known
vulnerability: a package no source answered for (pip-audit's own exit 0 then) is never a
pass. Reports in pip-audit's --format json shape."""

from __future__ import annotations

import json
from pathlib import Path

from audit_report import CLEAN, FOUND, NOT_AUDITED, judge, locked_names, main

LOCKED = ["flask", "requests", "ruff"]
DEPLOYED = {"flask", "requests"}


def dep(name: str, *vulns: dict) -> dict:
    return {"name": name, "version": "1.0", "vulns": list(vulns)}


def skip(name: str) -> dict:
    return {"name": name, "skip_reason": f"Dependency not found on PyPI: {name} (1.0)"}


ADVISORY = {"id": "PYSEC-0-1", "fix_versions": ["1.1"], "aliases": ["CVE-0-1"]}


def test_every_package_checked_and_nothing_known_passes() -> None:
    code, lines = judge({"dependencies": [dep(n) for n in LOCKED]}, LOCKED, DEPLOYED)
    assert code == CLEAN
    assert lines == ["3 locked packages audited: no known vulnerabilities."]


def test_a_known_vulnerability_fails_and_says_whether_it_is_deployed() -> None:
    report = {"dependencies": [dep("flask"), dep("requests", ADVISORY), dep("ruff", ADVISORY)]}
    code, lines = judge(report, LOCKED, DEPLOYED)
    assert code == FOUND
    text = "\n".join(lines)
    assert "requests 1.0: PYSEC-0-1, CVE-0-1; fixed in 1.1; deployed" in text
    assert "ruff 1.0: PYSEC-0-1, CVE-0-1; fixed in 1.1; dev tools only" in text


def test_no_source_answering_is_not_a_pass() -> None:
    code, lines = judge({"dependencies": [skip(n) for n in LOCKED]}, LOCKED, DEPLOYED)
    assert code == NOT_AUDITED
    assert lines[0].startswith("NOT AUDITED: no vulnerability source answered for any of the 3")


def test_one_package_unchecked_or_missing_from_the_report_is_not_a_pass() -> None:
    report = {"dependencies": [dep("flask"), skip("requests")]}  # ruff absent altogether
    code, lines = judge(report, LOCKED, DEPLOYED)
    assert code == NOT_AUDITED
    assert lines[0] == "NOT AUDITED: 2 of 3 locked packages:"
    assert "  ruff: missing from pip-audit's report" in lines


def test_pip_audit_stopping_before_any_answer_is_not_audited(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    lock.write_text("flask==1.0 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    stderr = tmp_path / "stderr"
    stderr.write_text("requests.exceptions.ConnectionError: Failed to resolve the OSV host\n")
    argv = ["--report", str(tmp_path / "none.json"), "--stderr", str(stderr), "--status", "1"]
    assert main([*argv, str(lock), str(lock)]) == NOT_AUDITED
    (tmp_path / "none.json").write_text(json.dumps({"dependencies": [dep("flask")]}))
    assert main([*argv[:-1], "0", str(lock), str(lock)]) == CLEAN


def test_lock_names_are_normalised_as_pip_audit_reports_them(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    lock.write_text("Flask_WTF==1.0 \\\n    --hash=sha256:00\n    # via zope.interface==1\n")
    assert locked_names(lock) == ["flask-wtf"]
