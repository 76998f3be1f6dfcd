"""Recovery step: with the contact proven, unlock only (the password stays) or set a new
password. The account is named here for the first time."""

from __future__ import annotations

import logging

from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import RadioField, SelectChoice
from wtforms.validators import InputRequired

from provider.flows.step import Finished, Next, Outcome, Stay, Visit
from provider.keycloak import GatewayError, IdentityServiceUnavailable
from provider.recovery import writes
from provider.recovery.state import RecoveryData

log = logging.getLogger(__name__)


class ChooseForm(FlaskForm):
    choice = RadioField(
        _l("What do you want to do?"),
        choices=[
            SelectChoice(value="unlock", label=_l("Unlock my account and keep my password")),
            SelectChoice(value="password", label=_l("Set a new password")),
        ],
        validators=[InputRequired(_l("Choose what to do"))],
    )


class ChooseStep:
    name = "choose"
    title = _l("Unlock or set a new password")
    template = "recovery/choose.html"
    limits = ()

    def show(self, visit: Visit[RecoveryData]) -> ResponseReturnValue:
        return visit.page(form=ChooseForm(), locked=_locked(visit))

    def submit(self, visit: Visit[RecoveryData]) -> Outcome[RecoveryData]:
        form = ChooseForm()
        if not form.validate():
            return Stay(visit.page(400, form=form, locked=_locked(visit)))
        if form.choice.data == "password":
            return Next()
        try:
            writes.unlock(visit.svc, visit.engine, visit.state)
        except writes.NotRecoverable:
            return Stay(
                visit.page(
                    409,
                    form=form,
                    failure=_(
                        "This account cannot be recovered here any more. Ask the IT help desk."
                    ),
                )
            )
        except writes.WriteInProgress:
            return Stay(
                visit.page(
                    409,
                    form=ChooseForm(formdata=None),
                    failure=_("We are already unlocking your account. Wait a moment, then reload."),
                )
            )
        except IdentityServiceUnavailable:
            log.warning("unlock cut short", extra={"flow_step": self.name})
            return Stay(
                visit.page(
                    503,
                    form=ChooseForm(formdata=None),
                    failure=_(
                        "The sign-in service did not answer, so we could not unlock your "
                        "account yet. Try again in a moment."
                    ),
                )
            )
        log.info("account unlocked", extra={"flow_step": self.name, "outcome": "ok"})
        return Finished()


def _locked(visit: Visit[RecoveryData]) -> bool | None:
    """Is Keycloak's brute-force lock on now? None when it cannot say."""
    keycloak_id = visit.data.keycloak_id
    if keycloak_id is None:
        return None
    try:
        return bool(visit.svc.keycloak.lockout_status(keycloak_id).get("disabled"))
    except GatewayError:
        return None
