"""Structured (JSON lines) logging that never carries secrets or personal data.

Log calls pass context through `extra={...}`. Keys that could hold a secret or a
student's personal data are replaced by "[redacted]" before anything is written, so a
careless `extra` cannot leak a password, a code or a date of birth.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

_SENSITIVE_KEY = re.compile(
    r"pass|secret|token|code|otp|birth|dob|id_?last|passport|authori[sz]ation|cookie|email|phone",
    re.IGNORECASE,
)
# Keys allowed through even though they match the pattern above: they hold no secret.
_SAFE_KEYS = frozenset({"status_code", "error_key", "error_code"})
_RESERVED = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


def _context(record: logging.LogRecord) -> dict[str, object]:
    context: dict[str, object] = {}
    for key, value in vars(record).items():
        if key in _RESERVED or key.startswith("_"):
            continue
        if _SENSITIVE_KEY.search(key) and key not in _SAFE_KEYS:
            value = "[redacted]"
        context[key] = value
    return context


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_context(record),
        }
        if record.exc_info and record.exc_info[0] is not None:
            # The type only: exception messages can quote the request that failed.
            entry["exc_type"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(f"{k}={v}" for k, v in _context(record).items())
        line = f"{record.levelname:<7} {record.name}: {record.getMessage()}"
        return f"{line} {context}".rstrip()


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Request lines from the development server carry query strings: keep them out.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
