"""Recovery step 2: the one-time code sent to the verified contact (or, for an account
that cannot be recovered here, to nobody: the page and its answers are the same).

Wrong tries count twice: on the code's record (5 per flow and contact, a resend does not
reset them) and on the account's recovery counter (`lockout`, keyed `r/<user ID>`), which
a new flow does not reset either: 5 wrong in a row lock recovery for the account a while.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from flask import request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import Length, Optional

from provider import audit
from provider.flows.step import Next, Outcome, Stay, StepLimit, Visit
from provider.flows.steps.identify_check import FAILURE_FLOOR_SECONDS
from provider.guards import verification
from provider.keycloak import GatewayError
from provider.limits import send_limit
from provider.recovery import counters, sending
from provider.recovery.lookup import Found, look_up_again
from provider.recovery.state import RecoveryData
from provider.recovery.steps.wait import too_many_requests


class CodeForm(FlaskForm):
    code = StringField(
        _l("6-digit code"),
        validators=[Optional(), Length(max=12)],
        render_kw={"inputmode": "numeric", "autocomplete": "one-time-code"},
    )


class CodeStep:
    name = "code"
    title = _l("Enter the code we sent")
    template = "recovery/code.html"
    # Only "Send a new code" spends the per-address sending budget.
    limits = (
        StepLimit(
            send_limit,
            spends=lambda: request.method == "POST" and request.form.get("action") == "resend",
        ),
    )

    def show(self, visit: Visit[RecoveryData]) -> ResponseReturnValue:
        return visit.page(form=CodeForm(formdata=None), channel=visit.data.channel)

    def submit(self, visit: Visit[RecoveryData]) -> Outcome[RecoveryData]:
        if request.form.get("action") == "resend":
            return Stay(self.resend(visit))
        return self.verify(visit)

    def resend(self, visit: Visit[RecoveryData]) -> ResponseReturnValue:
        started = time.monotonic()
        data = visit.data
        page = {"form": CodeForm(formdata=None), "channel": data.channel}
        wait = sending.spend_budgets(data.budget_key, data.channel)
        if wait is not None:
            return too_many_requests(visit, wait, **page)
        user_id = visit.state.user_id or None
        found = Found(user_id, None, None, "not_recoverable")
        if data.keycloak_id is not None and user_id:
            try:
                found = look_up_again(visit.svc, data.keycloak_id, user_id, data.channel)
            except GatewayError:
                # Only a recoverable account's resend asks Keycloak: its failure must
                # answer like every other resend (no code this time), not as a 503.
                found = Found(user_id, None, None, "keycloak_unavailable")
            if found.contact is not None and (
                sending.contact_of(visit.svc, data.channel, found.contact) != data.contact
            ):
                found = Found(user_id, None, None, "contact_changed")
        sending.send_or_arm(visit.svc, visit.engine, visit.state, found, started)
        return visit.page(resent=True, **page)

    def verify(self, visit: Visit[RecoveryData]) -> Outcome[RecoveryData]:
        started = time.monotonic()
        outcome = self._verify(visit)
        if not isinstance(outcome, Next):
            # A wrong try for a real account writes its audit too: padded, every failure
            # answers in the same time whether or not the account exists.
            remaining = FAILURE_FLOOR_SECONDS - (time.monotonic() - started)
            if remaining > 0:
                time.sleep(remaining)
        return outcome

    def _verify(self, visit: Visit[RecoveryData]) -> Outcome[RecoveryData]:
        svc = visit.svc
        data = visit.data
        form = CodeForm()
        page = {"channel": data.channel}
        if not form.validate() or not (form.code.data or "").strip():
            form.code.errors = [*form.code.errors] or [_("Enter the 6-digit code")]
            return Stay(visit.page(400, form=form, **page))
        now = datetime.now(UTC)
        subject = visit.state.user_id or None
        attempt = counters.begin(svc, data, now)
        if attempt.locked_until is not None:
            seconds = max(1, int((attempt.locked_until - now).total_seconds()))
            return Stay(too_many_wrong(visit, seconds, form=form, **page))
        try:
            verification.check_hashed(
                svc.sessions,
                svc.hasher,
                flow_key=visit.engine.key(visit.state),
                channel=data.channel,
                contact=data.contact,
                # The account's own counter is locked: this try is a wrong one, answered
                # and counted as any other (no typed code matches an empty one).
                code="" if attempt.account_locked else form.code.data or "",
                now=now,
            )
        except (verification.CodeWrong, verification.CodeExpired, verification.TooManyWrong) as e:
            locks = counters.failed(svc, data, now)
            if subject:
                audit.record_now(
                    svc.sessions,
                    audit.STUDENT,
                    "recovery.code_failed",
                    subject,
                    reason=type(e).__name__,
                )
                for lock in locks[:1]:  # one try, one lock told (both counters may lock at once)
                    audit.record_now(
                        svc.sessions,
                        audit.STUDENT,
                        "recovery.locked",
                        subject,
                        until=lock.until.isoformat(timespec="seconds"),
                    )
            form.code.errors = [_wrong(e)]
            return Stay(visit.page(400, form=form, **page))
        except Exception:
            # No answer was given (the database failed): not the student's failure.
            counters.released(svc, data)
            raise
        if data.keycloak_id is None or not subject:
            # Cannot happen (a decoy matches no code); never go on without an account, and
            # let the attempt count as a wrong one.
            form.code.errors = [_wrong(verification.CodeWrong(0))]
            return Stay(visit.page(400, form=form, **page))
        if svc.settings.recovery_asks_birth_date:
            # The proof is not complete until the date of birth: the right code neither
            # counts as a wrong try nor wipes out the wrong ones (a new flow's code would
            # otherwise buy a fresh set of date-of-birth guesses).
            counters.released(svc, data)
        else:
            counters.succeeded(svc, data, now)
        data.proven = True
        audit.record_now(svc.sessions, audit.STUDENT, "recovery.code_proven", subject)
        return Next()


def _wrong(error: Exception) -> str:
    if isinstance(error, verification.CodeWrong) and error.remaining > 0:
        return ngettext(
            "That code is not right. You have %(num)d try left.",
            "That code is not right. You have %(num)d tries left.",
            error.remaining,
        )
    if isinstance(error, verification.CodeExpired):
        return _("That code has expired. Ask for a new one.")
    return _("Too many wrong codes. Start again later, or ask the IT help desk.")


def too_many_wrong(
    visit: Visit[RecoveryData], seconds: int, **context: object
) -> ResponseReturnValue:
    minutes = max(1, -(-seconds // 60))
    failure = ngettext(
        "Too many wrong tries for this account. Try again in %(num)d minute, or ask the IT "
        "help desk.",
        "Too many wrong tries for this account. Try again in %(num)d minutes, or ask the IT "
        "help desk.",
        minutes,
    )
    return visit.page(429, {"Retry-After": str(seconds)}, failure=failure, **context)
