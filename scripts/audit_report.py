"""Reads pip-audit's JSON report for scripts/audit and says plainly whether every locked
package was checked against a vulnerability source and what was found.

pip-audit alone is not enough here: a package no source answered for is only a warning to
it ("No known vulnerabilities found", exit 0, when nothing could be checked at all), and its
--strict mode stops at the first such package with the exit code of a finding. So the report
is judged here instead, and a package left unchecked is never a pass.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

CLEAN = 0  # every locked package checked, none with a known vulnerability
FOUND = 1  # known vulnerabilities (pip-audit's own code for them)
NOT_AUDITED = 3  # no vulnerability source answered for some or all packages
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", re.MULTILINE)


def locked_names(lock: Path) -> list[str]:
    """The lock's package names as pip-audit reports them (PEP 503 normalised)."""
    return [re.sub(r"[-_.]+", "-", name).lower() for name in PIN.findall(lock.read_text())]


def judge(report: dict[str, Any], locked: list[str], deployed: set[str]) -> tuple[int, list[str]]:
    """The exit code and the lines to print for one report of the packages in `locked`."""
    checked: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for dep in report.get("dependencies", []):
        if "skip_reason" in dep:
            skipped[dep["name"]] = dep["skip_reason"]
        else:
            checked[dep["name"]] = dep
    for name in locked:
        if name not in checked and name not in skipped:
            skipped[name] = "missing from pip-audit's report"

    lines = []
    vulnerable = {name: dep for name, dep in checked.items() if dep.get("vulns")}
    if vulnerable:
        lines.append(f"KNOWN VULNERABILITIES in {len(vulnerable)} locked package(s):")
        for name, dep in sorted(vulnerable.items()):
            where = "deployed (requirements.lock)" if name in deployed else "dev tools only"
            for vuln in dep["vulns"]:
                ids = ", ".join([vuln["id"], *vuln.get("aliases", [])])
                fixed = ", ".join(vuln.get("fix_versions", [])) or "no fixed version yet"
                lines.append(f"  {name} {dep['version']}: {ids}; fixed in {fixed}; {where}")
                if vuln.get("description"):
                    lines.append(f"    {vuln['description'][:200]}")
        lines.append(
            "Move the range in pyproject.toml past the affected versions where needed, then "
            "scripts/lock --upgrade-package NAME and commit both lock files."
        )
    if skipped and not checked:
        reason = next(iter(skipped.values()))
        lines.append(
            f"NOT AUDITED: no vulnerability source answered for any of the {len(skipped)} "
            f"locked packages (first reason: {reason}). This machine cannot reach one: run "
            "scripts/audit where PyPI's JSON API, or OSV with `scripts/audit -s osv`, is reachable."
        )
    elif skipped:
        lines.append(f"NOT AUDITED: {len(skipped)} of {len(locked)} locked packages:")
        lines.extend(f"  {name}: {reason}" for name, reason in sorted(skipped.items()))
    if not vulnerable and not skipped:
        lines.append(f"{len(checked)} locked packages audited: no known vulnerabilities.")
    code = FOUND if vulnerable else NOT_AUDITED if skipped else CLEAN
    return code, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--report", type=Path, required=True, help="pip-audit's --format json")
    parser.add_argument("--stderr", type=Path, required=True, help="what pip-audit printed")
    parser.add_argument("--status", type=int, required=True, help="pip-audit's exit code")
    parser.add_argument("audited_lock", type=Path)
    parser.add_argument("deployed_lock", type=Path)
    args = parser.parse_args(argv)

    report = None
    if args.report.is_file() and args.report.stat().st_size:
        report = json.loads(args.report.read_text())
    if report is None or args.status not in (CLEAN, FOUND):
        stderr = args.stderr.read_text(errors="replace").strip().splitlines()
        last = stderr[-1] if stderr else "(nothing)"
        if report is None and args.status == 1:
            print(
                "NOT AUDITED: pip-audit stopped before any answer; no vulnerability source "
                f"could be reached (its last line: {last})",
                file=sys.stderr,
            )
            return NOT_AUDITED
        print(f"pip-audit failed (exit {args.status}): {last}", file=sys.stderr)
        return 2
    code, lines = judge(
        report, locked_names(args.audited_lock), set(locked_names(args.deployed_lock))
    )
    print("\n".join(lines), file=sys.stdout if code == CLEAN else sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
