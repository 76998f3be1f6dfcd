"""Where a service process spends its CPU during a benchmark: py-spy sampling every thread
of the service's processes, folded into the costs that matter for the service.

py-spy (not cProfile) because the service runs its requests on gunicorn's worker threads,
which cProfile does not see, and because sampling adds little to the measured run. It is
installed into a virtualenv of its own under the cache (scripts/tool-venv), never into the
project's. Only samples of the thread holding the GIL count (`--gil`): a thread waiting on
Keycloak or the database has let it go, so samples divided by the rate are the Python CPU
seconds, near enough (C code that releases the GIL, such as argon2, is not seen).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

PY_SPY_VERSION = "0.4.3"
RATE = 200  # samples per second per thread
ROOT = Path(__file__).resolve().parents[2]

# The first match from the innermost frame outwards names a sample's cost. Standard-library
# frames (re, json, socket, ...) match nothing and pass the sample on to their caller.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("argon2 (the code's hash)", ("argon2/",)),
    ("zxcvbn (password strength)", ("zxcvbn/",)),
    ("Jinja2 templates", ("jinja2/", "/templates/")),
    ("Babel, translations", ("babel/", "flask_babel/", "gettext.py")),
    ("WTForms, CSRF", ("wtforms/", "flask_wtf/")),
    ("SQLAlchemy, database driver", ("sqlalchemy/", "psycopg/", "psycopg_pool/", "sqlite3/")),
    ("Keycloak admin API (HTTP)", ("keycloak/", "requests/", "urllib3/", "http/client")),
    ("JSON logging", ("logging_setup.py", "logging/")),
    (
        "Flask, Werkzeug, gunicorn",
        ("flask/", "werkzeug/", "gunicorn/", "flask_limiter/", "limits/"),
    ),
    ("service code", ("provider/",)),
]
_FRAME = re.compile(r"^(?P<func>.*) \((?P<where>[^()]*):\d+\)$")


@dataclass
class Profile:
    samples: Counter[str]  # category -> samples
    functions: Counter[str]  # innermost service function -> samples (inclusive)
    rate: int

    def ms_per(self, samples: int, units: int) -> float:
        return 1000 * samples / self.rate / max(1, units)


def py_spy() -> str:
    """The py-spy binary, installed on first use."""
    out = subprocess.run(
        ["bash", "-c", f'source "{ROOT}/scripts/tool-venv" && tool_venv py-spy {PY_SPY_VERSION}'],
        check=True,
        capture_output=True,
        text=True,
    )
    return str(Path(out.stdout.strip()) / "py-spy")


class Recording:
    """py-spy recording `pid` and its subprocesses until `stop`."""

    def __init__(self, pid: int, out: Path) -> None:
        self.out = out
        self._process = subprocess.Popen(
            [
                py_spy(),
                "record",
                *("--pid", str(pid), "--subprocesses", "--gil", "--nonblocking"),
                *("--rate", str(RATE), "--format", "raw", "--output", str(out)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> Profile:
        self._process.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
        self._process.wait(timeout=60)
        return fold(self.out)


def fold(raw: Path) -> Profile:
    """Fold py-spy's raw (collapsed) stacks into categories and service functions."""
    samples: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        frames = [m for m in (_FRAME.match(f) for f in stack.split(";")) if m]
        if any(m["func"].startswith("Arbiter.") for m in frames):
            continue  # gunicorn's master: not the requests' work
        count = int(count_text)
        samples[_category(frames)] += count
        ours = [m for m in frames if "provider/" in m["where"]]
        if ours:
            inner = ours[-1]
            functions[f"{inner['func']} ({os.path.basename(inner['where'])})"] += count
    return Profile(samples, functions, RATE)


def _category(frames: list[re.Match[str]]) -> str:
    for frame in reversed(frames):
        for name, marks in CATEGORIES:
            if any(mark in frame["where"] for mark in marks):
                return name
    return "other (interpreter, standard library)"
