"""Structured (JSON lines) logging that never carries secrets or personal data.

Log calls pass context through `extra={...}`. Only keys on an allowlist are written
as given; any other key is replaced by "[redacted]", so a careless `extra` cannot leak a
password, a code, a username or a date of birth. Messages are constant strings: no
personal value is ever formatted into one.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

from flask import has_request_context, request

# Context keys that are written as they are. Every other key is "[redacted]": a new
# field has to be judged safe here before it shows in a log, never the other way round.
SAFE_CONTEXT_KEYS = frozenset(
    {
        "action",
        "status",
        "error_key",
        "method",
        "path",
        "endpoint",
        "duration_ms",
        "count",
        "realm",
        "step",
        "flow_step",
        "outcome",
        "reason",
        "request_id",
    }
)
_RESERVED = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


def _context(record: logging.LogRecord) -> dict[str, object]:
    context: dict[str, object] = {}
    for key, value in vars(record).items():
        if key in _RESERVED or key.startswith("_"):
            continue
        context[key] = value if key in SAFE_CONTEXT_KEYS else "[redacted]"
    return context


# Flask's own line for an unhandled exception quotes the request path, which can hold a
# user ID (/helpdesk/students/<user_id>): it is written as a constant message with the
# route's rule instead.
_FLASK_EXCEPTION = re.compile(r"Exception on \S* \[[A-Z]+\]")


def _message(record: logging.LogRecord) -> tuple[str, dict[str, object]]:
    message = record.getMessage()
    if not _FLASK_EXCEPTION.fullmatch(message):
        return message, {}
    where: dict[str, object] = {}
    if has_request_context():
        where["method"] = request.method
        if request.url_rule is not None:
            where["endpoint"] = request.url_rule.rule
    return "unhandled exception in a request", where


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message, where = _message(record)
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": message,
            **_context(record),
            **where,
        }
        if record.exc_info and record.exc_info[0] is not None:
            # The type only: exception messages can quote the request that failed.
            entry["exc_type"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message, where = _message(record)
        context = " ".join(f"{k}={v}" for k, v in {**_context(record), **where}.items())
        line = f"{record.levelname:<7} {record.name}: {message}"
        return f"{line} {context}".rstrip()


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Request lines from the development server carry query strings: keep them out.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    # urllib3 logs retried URLs, query strings (usernames) included.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
