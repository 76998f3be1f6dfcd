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
        status=503,
        username="s123456",
        student={"dob": "2000-01-01"},
    )
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    for secret in ("hunter2", "ABCD-EFGH", "2000-01-01", "a@b.c", "+85362345678", "s123456"):
        assert secret not in line
    assert entry["password"] == "[redacted]"
    assert entry["action"] == "set_password"
    assert entry["status"] == 503
    assert entry["username"] == "[redacted]"
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


def test_gateway_user_repr_carries_no_personal_data() -> None:
    from provider.keycloak import KeycloakUser

    user = KeycloakUser.from_representation(
        {
            "id": "0e3c1f0a-0000-4000-8000-000000000001",
            "username": "s123456",
            "email": "ana@example.edu",
            "firstName": "Ana",
            "attributes": {"phone_number": ["+85362345678"]},
            "enabled": True,
        }
    )
    text = repr(user)
    for value in ("s123456", "ana@example.edu", "Ana", "+85362345678"):
        assert value not in text


def test_flask_exception_lines_carry_no_path() -> None:
    """Flask logs "Exception on <path> [GET]" itself; a path can hold a user ID."""
    import io

    from flask import Flask

    from provider.logging_setup import JsonFormatter as Json

    app = Flask("t")

    @app.get("/helpdesk/students/<user_id>")
    def boom(user_id: str) -> str:
        raise RuntimeError(user_id)

    for formatter in (Json(), TextFormatter()):
        out = io.StringIO()
        handler = logging.StreamHandler(out)
        handler.setFormatter(formatter)
        app.logger.handlers[:] = [handler]
        assert app.test_client().get("/helpdesk/students/s7654321").status_code == 500
        line = out.getvalue()
        assert "s7654321" not in line
        assert "unhandled exception in a request" in line
        assert "/helpdesk/students/<user_id>" in line
