"""The public pages around the activation flow."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue

bp = Blueprint("pages", __name__)


@bp.get("/")
def start() -> ResponseReturnValue:
    return render_template("start.html")
