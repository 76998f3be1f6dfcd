import json
import logging

from provider.logging_setup import JsonFormatter, TextFormatter


def _record(**extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord({"name": "t", "levelname": "INFO", "msg": "hello"})
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_lines_redact_sensitive_context() -> None:
    record = _record(
        password="hunter2hunter2",
        activation_code="ABCD-EFGH",
        date_of_birth="2000-01-01",
        email="a@b.c",
        phone_number="+85362345678",
        client_secret="s",
        action="set_password",
        status_code=503,
    )
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    for secret in ("hunter2", "ABCD-EFGH", "2000-01-01", "a@b.c", "+85362345678"):
        assert secret not in line
    assert entry["password"] == "[redacted]"
    assert entry["action"] == "set_password"
    assert entry["status_code"] == 503
    assert entry["msg"] == "hello"


def test_exception_message_is_not_logged() -> None:
    try:
        raise ValueError("password=hunter2hunter2")
    except ValueError:
        import sys

        record = _record()
        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "hunter2" not in line
    assert json.loads(line)["exc_type"] == "ValueError"


def test_text_format_redacts_too() -> None:
    line = TextFormatter().format(_record(otp="123456", action="x"))
    assert "123456" not in line
    assert "action=x" in line
