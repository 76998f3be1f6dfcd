"""Step 1, identify: the student proves who they are with four details.

The check itself (uniform failures, the timing floor, the lock and the proof-of-work
check for a hot ID) is `identify_check`; this module is the page: the form, the answers
in words, and the proof-of-work widget while the typed ID needs it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import request, session
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import InputRequired, Length

from provider.contact_input import mask_email, mask_phone
from provider.date_input import DateOfBirthField
from provider.flows.caller import activation_caller
from provider.flows.state import ActivationData, OnRecord
from provider.flows.step import Identified, Outcome, Stay, StepLimit, Visit
from provider.flows.steps import identify_check as check
from provider.guards import challenge, lockout
from provider.limits import identify_limit
from provider.proofing import normalize_user_id

log = logging.getLogger(__name__)


class IdentifyForm(FlaskForm):
    user_id = StringField(
        _l("User ID"),
        validators=[InputRequired(_l("Enter your user ID")), Length(max=64)],
        description=_l("As on your activation letter, for example dc12345."),
    )
    activation_code = StringField(
        _l("Activation code"),
        validators=[InputRequired(_l("Enter your activation code")), Length(max=64)],
        description=_l("From your activation letter or email."),
    )
    date_of_birth = DateOfBirthField()
    id_last4 = StringField(
        _l("Last 4 characters of your ID or passport number"),
        validators=[InputRequired(_l("Enter the last 4 characters of your ID")), Length(max=64)],
        description=_l("For 1234567(8) enter 5678."),
    )


@dataclass(frozen=True)
class CheckView:
    """The proof-of-work check on the page: the widget's challenge when it is needed now
    (else None: the lock comes first), and the minutes until it is no longer needed (the
    way without JavaScript)."""

    challenge: str | None
    minutes: int


# Until when the user ID this browser typed last needs the check (Unix seconds): the
# forms it gets until then carry the check already. Never the ID itself.
CHECK_KEY = "umpass_check_until"


class IdentifyStep:
    name = "identify"
    title = _l("Confirm who you are")
    template = "flow/identify.html"
    limits = (StepLimit(identify_limit),)

    def show(self, visit: Visit) -> ResponseReturnValue:
        form = IdentifyForm()
        form.user_id.data = user_id_hint(visit)
        return visit.page(form=form, check=_remembered_check(visit, _now()))

    def submit(self, visit: Visit) -> Outcome:
        form = IdentifyForm()
        if not form.validate():
            return Stay(visit.page(400, form=form, check=_remembered_check(visit, _now())))
        try:
            who = check.identify(
                visit.svc,
                typed_user_id=form.user_id.data or "",
                typed_code=form.activation_code.data or "",
                date_of_birth=form.date_of_birth.data,
                typed_id_last4=form.id_last4.data or "",
                challenge_payload=request.form.get("altcha"),
            )
        except check.IdentifyLocked as locked:
            return Stay(
                visit.page(
                    429,
                    form=form,
                    check=_check_view(visit, locked.hot, _now()),
                    failure=ngettext(
                        "Too many attempts for this user ID. Try again in %(num)d minute, "
                        "or ask the IT help desk.",
                        "Too many attempts for this user ID. Try again in %(num)d minutes, "
                        "or ask the IT help desk.",
                        locked.minutes,
                    ),
                )
            )
        except check.IdentifyFailed as failed:
            return Stay(
                visit.page(
                    400,
                    form=form,
                    # A lock this failure began shows on the next attempt, as before.
                    check=_check_view(visit, failed.hot, _now(), explain_wait=False),
                    failure=_("We could not match those details. Check each one and try again."),
                )
            )
        return Identified(
            user_id=who.user_id,
            data=ActivationData(
                code_id=who.code_id,
                keycloak_id=who.keycloak_id,
                on_record={
                    "email": OnRecord(mask_email(who.email), who.email_verified),
                    "phone": OnRecord(mask_phone(who.phone), who.phone_verified),
                },
                hints=[w for w in (who.first_name, who.last_name, who.email_local) if w],
            ),
        )


def user_id_hint(visit: Visit) -> str | None:
    """The user ID typed where the student came from (Keycloak's sign-in page), as a
    pre-fill: only a value that can be a user ID, in its canonical form; it proves
    nothing (the code, date and digits still do)."""
    hint = activation_caller().user_id_hint()
    if not hint:
        return None
    return normalize_user_id(hint[:64], visit.svc.settings.user_id_length)


def _now() -> datetime:
    return datetime.now(UTC)


def _check_view(
    visit: Visit, hot: lockout.Hot | None, now: datetime, *, explain_wait: bool = True
) -> CheckView | None:
    """What the page shows of the typed ID's check; remembered for this browser's next
    forms. `explain_wait`: say, while the ID is locked, that a check follows the lock."""
    if hot is None:
        if CHECK_KEY in session:  # (a pop alone would rewrite the cookie every time)
            del session[CHECK_KEY]
        return None
    until = int(hot.check_ends.timestamp())
    if session.get(CHECK_KEY) != until:
        session[CHECK_KEY] = until
    minutes = check.minutes_until(hot.check_ends, now)
    if not hot.needs_check(now):
        return CheckView(None, minutes) if explain_wait else None
    svc = visit.svc
    return CheckView(challenge.issue(svc.hasher, svc.settings.challenge_max_number, now), minutes)


def _remembered_check(visit: Visit, now: datetime) -> CheckView | None:
    """A form shown without a typed ID: with the check while this browser's last typed ID
    needs it (during its lock too, which the submit then reports)."""
    until = session.get(CHECK_KEY)
    if not isinstance(until, int):
        return None
    ends = datetime.fromtimestamp(until, UTC)
    return _check_view(visit, lockout.Hot(now, ends) if now < ends else None, now)
