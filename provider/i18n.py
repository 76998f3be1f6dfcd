"""Languages: English, Traditional Chinese (for Macau) and Portuguese.

The student's choice (the switcher in the page header) is kept in its own cookie, so it
survives the session being renewed; without one, the browser's Accept-Language decides.
Catalogues live in provider/translations/<locale>/LC_MESSAGES/messages.po; the .mo files
are compiled from them (scripts, Dockerfile, or at start-up when stale).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.parse import urlsplit

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import Blueprint, Flask, redirect, request
from flask.typing import ResponseReturnValue
from flask_babel import Babel
from werkzeug.wrappers import Response

log = logging.getLogger(__name__)

LANGUAGES = {"en": "English", "zh_Hant": "繁體中文", "pt": "Português"}
HTML_LANG = {"en": "en", "zh_Hant": "zh-Hant", "pt": "pt"}
# The same languages as the realm's login theme names them (Keycloak's kc_locale).
KEYCLOAK_LOCALE = {"en": "en", "zh_Hant": "zh-TW", "pt": "pt"}
LANGUAGE_COOKIE = "umpass_lang"
TRANSLATIONS = Path(__file__).resolve().parent / "translations"

bp = Blueprint("i18n", __name__)


def from_language_tag(tag: str) -> str | None:
    tag = tag.lower().replace("_", "-")
    if tag.startswith("zh"):
        return "zh_Hant"  # Macau reads Traditional; closer than English for any Chinese reader
    if tag.startswith("pt"):
        return "pt"
    if tag.startswith("en"):
        return "en"
    return None


def select_locale() -> str:
    chosen = request.cookies.get(LANGUAGE_COOKIE, "")
    if chosen in LANGUAGES:
        return chosen
    for tag, _quality in request.accept_languages:
        locale = from_language_tag(tag)
        if locale:
            return locale
    return "en"


@bp.get("/language/<code>")
def choose_language(code: str) -> ResponseReturnValue:
    """The header's language links: remember the choice, go back where the student was."""
    response = redirect(_own_path(request.args.get("next", "/")))
    if code in LANGUAGES:
        remember_language(response, code)
    return response


def remember_language(response: Response, code: str) -> None:
    """Keep `code` as this browser's language choice (a year, its own cookie)."""
    response.set_cookie(
        LANGUAGE_COOKIE,
        code,
        max_age=365 * 24 * 3600,
        httponly=True,
        samesite="Lax",
        secure=request.is_secure,
    )


def _own_path(target: str) -> str:
    """`target` if it is a path on this site, else "/": never an open redirect."""
    if any(ord(c) < 0x21 or c in "\\\x7f" for c in target):
        return "/"  # browsers drop tabs and newlines: "/\t/evil" would become "//evil"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def compile_catalogues() -> None:
    """Write each .mo next to its .po when it is missing or older."""
    for po_path in TRANSLATIONS.glob("*/LC_MESSAGES/messages.po"):
        mo_path = po_path.with_suffix(".mo")
        if mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
            continue
        try:
            with po_path.open("rb") as po_file:
                catalog = read_po(po_file)
            # Written aside, then renamed: a parallel worker never reads half a file.
            partial = mo_path.with_suffix(f".mo.{os.getpid()}")
            with partial.open("wb") as mo_file:
                write_mo(mo_file, catalog)
            os.replace(partial, mo_path)
        except Exception:  # a broken catalogue must not stop the service: English still works
            log.exception("translations not compiled", extra={"path": str(mo_path)})


def install(app: Flask) -> None:
    compile_catalogues()
    app.config.setdefault("BABEL_DEFAULT_LOCALE", "en")
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(TRANSLATIONS)
    Babel(app, locale_selector=select_locale)
    app.register_blueprint(bp)

    @app.context_processor
    def languages() -> dict[str, object]:
        locale = select_locale()
        return {"languages": LANGUAGES, "current_language": locale, "html_lang": HTML_LANG[locale]}
