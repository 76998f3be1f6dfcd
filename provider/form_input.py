"""What a post to our pages may carry: a form as our pages send it, nothing else.

Every form of the service is a few text fields, radios, checkboxes and buttons, sent
urlencoded (or multipart, without files). A post that is anything else never came from
our pages: a file where text belongs, a field twice, a body that is not a form (text,
JSON, a broken multipart), bytes that are not UTF-8, control characters. Left to the
forms, such posts reached code that expects one string per field (a `FileStorage` or a
JSON number in a `StringField` ended in a 500) or were read leniently (werkzeug turns
bytes it cannot decode into `%FF` or U+FFFD, or drops a whole body it cannot parse).

One place decides instead, after the CSRF check and before any view: a post that is not
a plain form is refused with 400. A step of a flow answers with its own page again
(`refusal()`, read by the runner); any other form's route gets the error page here.
Nothing a refused post carried is read, counted or stored.

Identify's guarantees hold for a refused post. It is not a failed try: it is refused
before the check reads anything (no lookup, no HMAC, no `lockout.begin_attempt`), so it
tested no guess and there is nothing to count; counting it would instead let anyone lock
an ID with posts that prove nothing, under a user ID read from a body we could not read.
It needs no time floor either: the floor hides which detail of a real check failed, and
a refusal is decided by the request's own bytes alone, the same for every account (as an
empty field's 400 is). The per-address limit still spends on it like on any post.

Routes that take a file (none today) say so with `@takes_files`.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from flask import Flask, Request, current_app, g, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from werkzeug.formparser import FormDataParser

log = logging.getLogger(__name__)

FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# C0 controls and DEL, but tab, line feed and carriage return: nothing anyone types into
# a field of ours, and NUL cannot be stored in PostgreSQL text.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TAKES_FILES = "umpass_takes_files"
_ANSWERS_ITSELF = "umpass_answers_malformed_posts"
_REFUSAL = "umpass_form_refusal"

F = TypeVar("F", bound=Callable[..., Any])


class _StrictParser(FormDataParser):
    """werkzeug's parser, but a body it cannot read raises instead of becoming an empty
    form, and urlencoded bytes must be UTF-8 (werkzeug keeps bad ones as `%FF` text)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.silent = False

    def _parse_urlencoded(
        self,
        stream: Any,
        mimetype: str,
        content_length: int | None,
        options: dict[str, str],
    ) -> Any:
        # UnicodeDecodeError (a ValueError) on raw or percent-encoded bytes that are not
        # UTF-8. The stream is already limited to MAX_CONTENT_LENGTH.
        items = parse_qsl(stream.read().decode(), keep_blank_values=True, errors="strict")
        return stream, self.cls(items), self.cls()


class FormRequest(Request):
    """The app's request: forms parsed strictly; `unreadable` when the body was not."""

    form_data_parser_class = _StrictParser
    unreadable = False
    forgotten = False

    @property
    def is_json(self) -> bool:
        # Flask-WTF reads a JSON body as a form's data when there is no form.
        return not self.forgotten and super().is_json

    def forget_body(self) -> None:
        """Nothing this post carried is read from here on: a form built now (the page
        shown again) sees an empty post."""
        self.forgotten = True
        self.__dict__["form"] = self.parameter_storage_class()
        self.__dict__["files"] = self.parameter_storage_class()

    def _load_form_data(self) -> None:
        if "form" in self.__dict__:
            return
        try:
            super()._load_form_data()
        except ValueError:  # bytes that are not UTF-8, a broken multipart body
            self._unreadable()
            return
        # A multipart part whose name werkzeug could not read comes back named None; the
        # CSRF check, which runs first, would trip over it (a 500): an unreadable form.
        if any(not isinstance(name, str) for name in self.__dict__["form"]):
            self._unreadable()

    def _unreadable(self) -> None:
        self.unreadable = True
        self.__dict__["form"] = self.parameter_storage_class()
        self.__dict__["files"] = self.parameter_storage_class()


def _marked(view: F, mark: str) -> F:
    @functools.wraps(view)
    def marked(*args: Any, **kwargs: Any) -> Any:
        return view(*args, **kwargs)

    setattr(marked, mark, True)
    return marked  # type: ignore[return-value]


def takes_files(view: F) -> F:
    """This route's form takes a file upload."""
    return _marked(view, _TAKES_FILES)


def answers_malformed_posts(view: F) -> F:
    """This route shows its own form again for a refused post (it reads `refusal()`)."""
    return _marked(view, _ANSWERS_ITSELF)


def refusal() -> str | None:
    """Why this request's post is refused (None: it is a plain form, or no post)."""
    return g.get(_REFUSAL)


def message() -> str:
    return _(
        "We could not read the form that was sent. Nothing was changed. "
        "Fill it in and send it again."
    )


def why_malformed(req: Request, *, files_allowed: bool = False) -> str | None:
    """What makes `req`'s body something other than a form of ours (None: nothing)."""
    if req.mimetype not in FORM_TYPES:
        return "content_type"
    form = req.form  # parsed here, if it was not yet
    if isinstance(req, FormRequest) and req.unreadable:
        return "unreadable"
    if req.files and not files_allowed:
        return "file"
    for name, values in form.lists():
        if not isinstance(name, str):  # a multipart part whose name werkzeug could not read
            return "unnamed"
        if len(values) > 1:
            return "repeated"
        for text in (name, *values):
            # U+FFFD: werkzeug's stand-in for multipart bytes that were not UTF-8.
            if "\ufffd" in text:
                return "encoding"
            if _CONTROL.search(text):
                return "control"
    return None


def _check() -> ResponseReturnValue | None:
    if request.method not in _WRITES or request.endpoint is None:
        return None
    view = current_app.view_functions.get(request.endpoint)
    if view is None or request.blueprint in current_app.config["UMPASS_OWN_BODY_BLUEPRINTS"]:
        return None
    reason = why_malformed(request, files_allowed=getattr(view, _TAKES_FILES, False))
    if reason is None:
        return None
    log.info("form refused", extra={"reason": reason, "endpoint": request.endpoint})
    setattr(g, _REFUSAL, reason)
    if isinstance(request, FormRequest):
        request.forget_body()
    if getattr(view, _ANSWERS_ITSELF, False):
        return None
    return render_template("error.html", message=message()), 400


def install(app: Flask, *, own_body_blueprints: tuple[str, ...] = ()) -> None:
    """Parse posts strictly and refuse what is not a form of ours. Call after CSRF is
    installed (its check runs first: a post without a valid token is answered there).
    `own_body_blueprints` read bodies of another kind (OAuth's back channel)."""
    app.request_class = FormRequest
    app.config["UMPASS_OWN_BODY_BLUEPRINTS"] = frozenset(own_body_blueprints)
    app.before_request(_check)
