"""Recovery step 1: which account, and where the code goes.

The answer is the same page, status and time for every account, recoverable or not (see
`provider.recovery.sending`): "if the account has a verified … we sent a code".
"""

from __future__ import annotations

import time

from flask.typing import ResponseReturnValue
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import RadioField, SelectChoice, StringField
from wtforms.validators import DataRequired, InputRequired, Length

from provider.flows.state import Channel
from provider.flows.step import Identified, Outcome, Stay, StepLimit, Visit
from provider.guards import lockout
from provider.limits import identify_limit
from provider.recovery import sending
from provider.recovery.lookup import canonical, look_up
from provider.recovery.state import RecoveryData
from provider.recovery.steps.wait import too_many_requests


class StartForm(FlaskForm):
    account = StringField(
        _l("User ID or email address"),
        filters=[lambda value: value.strip() if isinstance(value, str) else value],
        validators=[DataRequired(_l("Enter your user ID or email address")), Length(max=254)],
        description=_l("Your user ID, for example dc12345, or the email address on your account."),
    )
    channel = RadioField(
        _l("Where should we send a code?"),
        choices=[
            SelectChoice(value="email", label=_l("By email")),
            SelectChoice(value="phone", label=_l("By text message")),
        ],
        validators=[InputRequired(_l("Choose where to send the code"))],
    )


class StartStep:
    name = "start"
    title = _l("Forgot your password or locked out?")
    template = "recovery/start.html"
    limits = (StepLimit(identify_limit),)

    def show(self, visit: Visit[RecoveryData]) -> ResponseReturnValue:
        return visit.page(form=StartForm())

    def submit(self, visit: Visit[RecoveryData]) -> Outcome[RecoveryData]:
        started = time.monotonic()
        form = StartForm()
        if not form.validate():
            return Stay(visit.page(400, form=form))
        svc = visit.svc
        typed = form.account.data or ""
        channel: Channel = "phone" if form.channel.data == "phone" else "email"
        key = sending.budget_key(svc, typed)
        wait = sending.spend_budgets(key, channel)
        if wait is not None:
            return Stay(too_many_requests(visit, wait, form=form))
        found = look_up(svc, typed, channel)
        contact = (
            sending.contact_of(svc, channel, found.contact)
            if found.contact is not None
            else sending.decoy_contact(svc, channel)
        )
        data = RecoveryData(
            channel=channel,
            lock_key=lockout.recovery_typed_key(
                svc.hasher, canonical(typed, svc.settings.user_id_length)
            ),
            budget_key=key,
            contact=contact,
            keycloak_id=found.keycloak_id,
            account_lock_key=lockout.recovery_key(found.user_id)
            if found.keycloak_id is not None and found.user_id
            else None,
        )
        return Identified(
            user_id=found.user_id or "",
            data=data,
            then=lambda stored: sending.send_or_arm(svc, visit.engine, stored, found, started),
        )
