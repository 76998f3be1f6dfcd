"""The framework floor of `scripts/bench activation`: what the service's libraries cost on
their own for an activation's eight requests, measured in the same run as the service.

An app of the same stack that does nothing else: Flask sessions, Flask-WTF's CSRF and a
three-field form rendered from a Jinja template, Flask-Babel's gettext, a Flask-Limiter
route limit, the service's SQLAlchemy engine on the same PostgreSQL, served by `umpass
serve`'s gunicorn settings. Four steps, each a GET (one read, the page) and a POST (CSRF,
the form validated, a read and a write in one transaction, 302), as an activation's four
steps are. What the service costs above this is its own work.

Served by `python -m devstack.framework_floor serve …`, `umpass serve`'s command line.
"""

from __future__ import annotations

import os
import secrets

from flask import Flask, redirect, render_template, session
from flask.typing import ResponseReturnValue
from flask_babel import Babel
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf import CSRFProtect, FlaskForm
from jinja2 import DictLoader
from sqlalchemy import text
from wtforms import BooleanField, StringField
from wtforms.validators import InputRequired, Length

from provider.storage.engine import make_engine, read_only

STEPS = 4
_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{{ _("Step %(n)s of %(c)s", n=n + 1, c=steps) }}</title></head><body><main>
<h1>{{ _("Step %(n)s of %(c)s", n=n + 1, c=steps) }}</h1>
<form method="post" novalidate>{{ form.csrf_token }}
{% for field in form if field.name != "csrf_token" %}
<label for="{{ field.id }}">{{ field.label.text }}</label>{{ field(class_="input") }}
{% endfor %}<button type="submit">{{ _("Continue") }}</button></form></main></body></html>"""


class _StepForm(FlaskForm):  # type: ignore[misc]
    answer = StringField("Answer", validators=[InputRequired(), Length(max=64)])
    other = StringField("Other", validators=[Length(max=64)])
    agree = BooleanField("Agree")


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=secrets.token_hex(32), RATELIMIT_STORAGE_URI="memory://")
    app.jinja_loader = DictLoader({"step.html": _PAGE})
    CSRFProtect(app)
    Babel(app)
    limiter = Limiter(key_func=get_remote_address, app=app, default_limits=[])
    engine = make_engine(os.environ["DATABASE_URL"])
    reads = read_only(engine)
    with engine.begin() as conn:
        conn.execute(
            text("CREATE TABLE IF NOT EXISTS framework_floor (id text PRIMARY KEY, step int)")
        )
    load = text("SELECT step FROM framework_floor WHERE id = :id")
    lock = text("SELECT step FROM framework_floor WHERE id = :id FOR UPDATE")
    write = text(
        "INSERT INTO framework_floor VALUES (:id, :step)"
        " ON CONFLICT (id) DO UPDATE SET step = excluded.step"
    )

    @app.get("/healthz")
    def healthz() -> str:
        return "ok"

    @app.route("/step/<int:n>", methods=["GET", "POST"])
    @limiter.limit("100000 per minute")
    def step(n: int) -> ResponseReturnValue:
        flow = session.setdefault("flow", secrets.token_hex(8))
        with reads.connect() as conn:
            conn.execute(load, {"id": flow}).first()
        form = _StepForm()
        if form.validate_on_submit():
            with engine.begin() as conn:
                conn.execute(lock, {"id": flow}).first()
                conn.execute(write, {"id": flow, "step": n + 1})
            return redirect(f"/step/{n + 1}")
        return render_template("step.html", form=form, n=n, steps=STEPS)

    return app


def main() -> None:
    """`python -m devstack.framework_floor serve --host H --port P --workers W --threads T`:
    `umpass serve`'s command line and gunicorn settings."""
    import argparse

    from provider.config import load_settings
    from provider.wsgi_server import options, serve

    parser = argparse.ArgumentParser(prog="devstack.framework_floor")
    parser.add_argument("command", choices=("serve",))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    settings = load_settings(dict(os.environ))
    bind = f"{args.host}:{args.port}"
    serve(create_app, options(settings, bind=bind, workers=args.workers, threads=args.threads))


if __name__ == "__main__":
    main()
