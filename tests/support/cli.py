"""Run one of the project's command-line tools as a user would: a fresh process, only the
environment given (plus PATH), output captured."""

from __future__ import annotations

import subprocess
import sys


def run_module(module: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
