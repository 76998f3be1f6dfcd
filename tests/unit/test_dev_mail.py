"""Development mail: every email kept decoded with its links whole (the catcher behind
scripts/dev), and /dev/mail showing them, which exists only in development."""

from __future__ import annotations

import json
import re
from pathlib import Path

from devstack.mail_catcher import FolderHandler

from provider import create_app
from provider.config import load_settings
from provider.delivery import EmailMessage
from provider.delivery.smtp import SmtpMailer, SmtpSettings
from provider.keycloak import IdentityServiceUnavailable, KeycloakGateway
from tests.support.inbox import _BoundController
from tests.support.listeners import loopback_listener

# Long enough that quoted-printable cuts it with "=" soft line breaks, as var/mail.log had.
LINK = "http://127.0.0.1:5000/activate/contacts?flow=" + "a1b2c3d4" * 12 + "&lang=zh_TW"
TEXT = f"您的確認碼是 482913。\n\nEnter it on the activation page within 10 minutes: {LINK}\n"


class _DownGateway(KeycloakGateway):
    def ping(self) -> None:
        raise IdentityServiceUnavailable("down")


def _catch(folder: Path, text: str = TEXT) -> Path:
    controller = _BoundController(FolderHandler(folder), loopback_listener())
    controller.start()
    try:
        SmtpMailer(SmtpSettings(port=int(controller.port))).send(
            EmailMessage("ana.lei@example.edu", "Your UMPASS confirmation code", text, "<p>x</p>")
        )
    finally:
        controller.stop()
    [eml] = folder.glob("*.eml")
    return eml


def test_each_email_is_kept_decoded_with_its_links_whole(tmp_path: Path) -> None:
    eml = _catch(tmp_path / "mail")
    raw = eml.read_bytes()
    assert LINK.encode() not in raw  # as sent: encoded, the link cut by soft breaks
    decoded = eml.with_suffix(".txt").read_text(encoding="utf-8")
    assert "Subject: Your UMPASS confirmation code" in decoded
    assert "To: ana.lei@example.edu" in decoded
    assert re.search(r"^Date: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$", decoded, re.M)
    assert LINK in decoded
    assert "您的確認碼是 482913。" in decoded
    assert eml.name.startswith("0001-") and eml.name.endswith("-ana.lei@example.edu.eml")


def _app(tmp_path: Path, environment: str):
    settings = load_settings(
        {
            "UMPASS_KC_CLIENT_SECRET": "x",
            "UMPASS_TESTING": "1",
            "UMPASS_ENV": environment,
            "DATABASE_URL": f"sqlite:///{tmp_path}/t.db",
            "UMPASS_DEV_MAIL_DIR": str(tmp_path / "mail"),
            "UMPASS_SMS_OUTBOX": str(tmp_path / "sms.jsonl"),
        }
    )
    return create_app(settings, gateway=_DownGateway(settings.keycloak))


def test_the_mail_page_shows_each_message_with_working_links(tmp_path: Path) -> None:
    _catch(tmp_path / "mail", TEXT + "<script>alert(1)</script>\n")
    (tmp_path / "sms.jsonl").write_text(
        json.dumps({"at": "2026-12-03T00:00:00", "to": "+85362345678", "text": "Code 771204"})
        + "\n"
    )
    page = _app(tmp_path, "development").test_client().get("/dev/mail")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Your UMPASS confirmation code" in html
    assert f'<a href="{LINK.replace("&", "&amp;")}">' in html
    assert "482913" in html and "Code 771204" in html and "+85362345678" in html
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html


def test_production_has_no_mail_page(tmp_path: Path) -> None:
    _catch(tmp_path / "mail")
    app = _app(tmp_path, "production")
    assert not [rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/dev")]
    assert app.test_client().get("/dev/mail").status_code == 404
