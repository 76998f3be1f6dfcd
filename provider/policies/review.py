"""Re-acceptance at sign-in: the page Keycloak's policy gate sends a student to.

After a new version of a policy is published, keycloak_addon's `umpass-policy-gate` stops
each active student who has not accepted it, once signed in and before any application,
and sends the browser to `/policies/review?ticket=…` (`review_ticket`: who, signed by the
realm). The student reads what changed and the new text in their language, then:

* **accepts**: the account gets ``id@version:time`` for each version (Keycloak first, the
  source of truth the gate reads), then this service's evidence and audit in one
  transaction; the browser goes back to Keycloak, which reads the account again and goes
  on to the application. A crash between the two writes leaves the account accepted and
  the evidence to `umpass backfill-policy-evidence`;
* **declines**: every Keycloak session of the account ends (audited), and back at Keycloak
  the gate finds the version still missing and ends the sign-in with a plain message.

A ticket is answered once (compare-and-set on its row) and works only in the browser that
brought it first: the link is taken out of the address bar at once, and a copy opened
elsewhere is refused. `/policies/current` tells the gate which versions are current.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime
from urllib.parse import urlencode

import requests
from flask import (
    Blueprint,
    Flask,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import lazy_gettext as _l
from sqlalchemy import select, update

from provider import audit
from provider.i18n import (
    KEYCLOAK_LOCALE,
    LANGUAGE_COOKIE,
    from_language_tag,
    remember_language,
    select_locale,
)
from provider.keycloak import ACCEPTED_POLICIES, STATE_ACTIVE, IdentityServiceUnavailable
from provider.keyed_hash import Purpose
from provider.policies import Policy, accepted_record, changes_since, parse_record
from provider.policies import evidence as evidence_rows
from provider.policies.acceptance_form import acceptance_form, missing
from provider.policies.published import current
from provider.policies.review_ticket import InvalidTicket, RealmKeys, ReviewTicket, verify
from provider.services import Services, services
from provider.storage.engine import bind_of, insert_unless_present
from provider.storage.models import PolicyReview

log = logging.getLogger(__name__)
# A review's answer (PolicyReview.answer): claimed as ACCEPTING while the account is
# written, then ACCEPTED; or DECLINED_ANSWER. None until answered.
ACCEPTING, ACCEPTED, DECLINED_ANSWER = "accepting", "accepted", "declined"

bp = Blueprint("policy_review", __name__, url_prefix="/policies")

SESSION_KEY = "umpass_policy_review"  # {"ticket": id, "browser": secret}
DECLINED = "policy.declined"
_KEYS = "umpass.policy_review_keys"
NOT_VALID = _l(
    "This page is no longer valid. Go back to the page you were signing in to and sign in again."
)
ELSEWHERE = _l(
    "This link was opened in another browser. Sign in again from the page you were signing in to."
)


def install(app: Flask, svc: Services) -> None:
    kc = svc.settings.keycloak
    jwks = f"{kc.url}/realms/{kc.realm}/protocol/openid-connect/certs"
    app.extensions[_KEYS] = RealmKeys(jwks, kc.timeout_seconds)
    app.register_blueprint(bp)


@bp.get("/current")
def current_versions() -> ResponseReturnValue:
    """The versions every active student must have accepted, for the gate (public: the
    policies are public documents)."""
    with bind_of(services(current_app).reads).connect() as conn:
        keys = [p.key for p in current(conn)]
    response = jsonify(current=keys)
    response.headers["Cache-Control"] = "no-store"  # the gate keeps it 30 s itself
    return response


@bp.get("/review")
def review() -> ResponseReturnValue:
    if "ticket" in request.args:
        return _arrive(request.args.get("ticket", ""))
    refused = request.args.get("refused")
    if refused:
        return _error(ELSEWHERE if refused == "elsewhere" else NOT_VALID)
    row = _bound_review()
    if row is None:
        return _error(NOT_VALID)
    if row.answer is not None:
        return _back_to_sign_in(row)  # answered (another tab): on to Keycloak
    due, earlier = _due(row)
    if not due:
        return _back_to_sign_in(row)
    return render_template(
        "policies/review.html", form=acceptance_form(due), policies=due, earlier=earlier
    )


@bp.post("/review")
def accept() -> ResponseReturnValue:
    row = _bound_review()
    if row is None:
        return _error(NOT_VALID)
    due, earlier = _due(row)
    form = acceptance_form(due)
    if due and (not form.validate() or missing(form, due)):
        return render_template(
            "policies/review.html", form=form, policies=due, earlier=earlier
        ), 400
    if not _claim(row, ACCEPTING):
        return _back_to_sign_in(row)  # answered meanwhile: Keycloak reads the account
    svc = services(current_app)
    at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    records = [accepted_record(p, at) for p in due]
    try:
        username = svc.keycloak.accept_policies(row.account_id, records) if records else None
    except Exception:
        _release(row, ACCEPTING)  # nothing written: the student may try again
        raise
    with svc.sessions.begin() as db:
        if username is not None:
            evidence_rows.record(db.connection(), username, records)
        db.execute(
            update(PolicyReview)
            .where(PolicyReview.ticket_id == row.ticket_id)
            .values(answer=ACCEPTED)
        )
    return _back_to_sign_in(row)


@bp.post("/review/decline")
def decline() -> ResponseReturnValue:
    row = _bound_review()
    if row is None:
        return _error(NOT_VALID)
    if not _claim(row, DECLINED_ANSWER):
        return _back_to_sign_in(row)
    svc = services(current_app)
    try:
        username = svc.keycloak.get_user(row.account_id).username
        # Signed out first: a decline must not leave the student signed in elsewhere.
        svc.keycloak.sign_out_everywhere(row.account_id)
    except Exception:
        _release(row, DECLINED_ANSWER)
        raise
    with svc.sessions.begin() as db:
        audit.record(db, audit.STUDENT, DECLINED, username)
    return _back_to_sign_in(row)


# -- arriving with a ticket -----------------------------------------------------------


def _arrive(raw: str) -> ResponseReturnValue:
    svc = services(current_app)
    try:
        ticket = verify(raw, keys=current_app.extensions[_KEYS], realm_url=_realm_url(svc))
    except InvalidTicket:
        return _refused("invalid")
    except requests.RequestException as exc:
        raise IdentityServiceUnavailable("the realm's keys could not be read") from exc
    held = session.get(SESSION_KEY) or {}
    secret = held.get("browser") if held.get("ticket") == ticket.id else None
    secret = secret or secrets.token_urlsafe(32)
    if not _bind(svc, ticket, secret):
        return _refused("elsewhere")
    session[SESSION_KEY] = {"ticket": ticket.id, "browser": secret}
    # The ticket leaves the address bar (and the history) at once.
    response = redirect(url_for("policy_review.review"), 303)
    language = _keycloak_language(ticket)
    if language:
        # The language Keycloak showed this student, unless they chose one here before.
        remember_language(response, language)
    return response


def _refused(why: str) -> ResponseReturnValue:
    """Out of the address bar first, then the refusal: the page's own requests (its
    stylesheet) would otherwise carry the ticket in their Referer."""
    return redirect(url_for("policy_review.review", refused=why), 303)


def _keycloak_language(ticket: ReviewTicket) -> str | None:
    """Keycloak's language for the student when it tells more than this browser does: not
    when they chose one here before (the cookie), and not English, which is also what
    Keycloak falls back to when it matches none (a zh-MO browser gets English there)."""
    language = from_language_tag(ticket.locale)
    if language in (None, "en") or request.cookies.get(LANGUAGE_COOKIE):
        return None
    return language


def _bind(svc: Services, ticket: ReviewTicket, secret: str) -> bool:
    """The ticket's row, bound to this browser; False when another browser has it."""
    browser = svc.hasher.digest(Purpose.POLICY_REVIEW_BROWSER, secret)
    with svc.sessions.begin() as db:
        # Insert-or-keep: of two first arrivals at once, one row stands.
        db.execute(
            insert_unless_present(
                db.get_bind().dialect.name, PolicyReview.__table__, "ticket_id"
            ).values(
                ticket_id=ticket.id,
                account_id=ticket.account_id,
                browser=browser,
                callback=ticket.callback,
                expires_at=ticket.expires_at,
            )
        )
        row = db.get(PolicyReview, ticket.id)
    return row is not None and svc.hasher.matches(
        Purpose.POLICY_REVIEW_BROWSER, secret, row.browser
    )


def _realm_url(svc: Services) -> str:
    return svc.settings.oidc.keycloak_realm_url


# -- the bound review ------------------------------------------------------------------


def _bound_review() -> PolicyReview | None:
    """This browser's review, unexpired; None for any other."""
    held = session.get(SESSION_KEY) or {}
    ticket_id, secret = held.get("ticket"), held.get("browser")
    if not isinstance(ticket_id, str) or not isinstance(secret, str):
        return None
    svc = services(current_app)
    with svc.reads() as db:
        row = db.scalar(select(PolicyReview).where(PolicyReview.ticket_id == ticket_id))
    if row is None or row.expires_at <= datetime.now(UTC):
        return None
    if not svc.hasher.matches(Purpose.POLICY_REVIEW_BROWSER, secret, row.browser):
        return None
    return row


def _due(row: PolicyReview) -> tuple[tuple[Policy, ...], dict[str, tuple[str, list[Policy]]]]:
    """The current versions the account does not hold, and what changed since the ones it
    does (read from the account: the ticket's list may be older than a publication)."""
    svc = services(current_app)
    account = svc.keycloak.get_user(row.account_id)
    if account.activation_state != STATE_ACTIVE:
        return (), {}  # set back to pending meanwhile: nothing to accept here
    records = list(account.attributes.get(ACCEPTED_POLICIES) or [])
    held = {r.key for r in filter(None, map(parse_record, records))}
    with bind_of(svc.reads).connect() as conn:
        due = tuple(p for p in current(conn) if p.key not in held)
    return due, changes_since(records)


def _claim(row: PolicyReview, answer: str) -> bool:
    """Compare-and-set: of parallel answers to one ticket, one goes on."""
    now = datetime.now(UTC)
    with services(current_app).sessions.begin() as db:
        claimed = db.execute(
            update(PolicyReview)
            .where(
                PolicyReview.ticket_id == row.ticket_id,
                PolicyReview.answer.is_(None),
                PolicyReview.expires_at > now,
            )
            .values(answer=answer, answered_at=now)
        )
    return bool(claimed.rowcount)


def _release(row: PolicyReview, claimed: str) -> None:
    """Undo this request's own claim only (never one another request holds)."""
    with services(current_app).sessions.begin() as db:
        db.execute(
            update(PolicyReview)
            .where(PolicyReview.ticket_id == row.ticket_id, PolicyReview.answer == claimed)
            .values(answer=None, answered_at=None)
        )


def _back_to_sign_in(row: PolicyReview) -> ResponseReturnValue:
    session.pop(SESSION_KEY, None)
    # Keycloak's pages from here on (the refusal after a decline) in the language the
    # student read the policy in: Keycloak itself matches no zh-MO browser, for one.
    joint = "&" if "?" in row.callback else "?"
    url = row.callback + joint + urlencode({"kc_locale": KEYCLOAK_LOCALE[select_locale()]})
    # A page that moves on by itself, not a redirect: the pages' CSP form-action 'self'
    # would stop a form submit redirected to Keycloak (see provider/oidc/handoff.answer).
    return render_template("oidc/return.html", url=url, wait_seconds=0, user_id=None)


def _error(message: object) -> ResponseReturnValue:
    return render_template("error.html", message=message), 400
