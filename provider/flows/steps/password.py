"""Step 4, password: the first password, judged here first, then one write to Keycloak.

The rules the service adds to the realm's own (user ID, date of birth, activation code,
guessable passwords) are `password_rules`; the ordered, idempotent write that sets the
password and makes the account active is `activate`. The live strength meter asks
`strength_verdict` (same judgement as the submit, so the two never disagree).
"""

from __future__ import annotations

import logging

from flask import jsonify, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import bindparam, select

from provider.flows.step import Finished, Impossible, Outcome, Stay, Visit
from provider.flows.steps import activate as activation
from provider.flows.steps.password_rules import PasswordForm, strength, weakness
from provider.keycloak import PasswordRejected
from provider.password_policy import PasswordPolicy
from provider.storage.engine import bind_of
from provider.storage.models import ActivationCode, Student

log = logging.getLogger(__name__)

_DOB_HASH = select(Student.__table__.c.dob_hash).where(
    Student.__table__.c.user_id == bindparam("user_id")
)
_CODE_HASH = select(ActivationCode.__table__.c.code_hash).where(
    ActivationCode.__table__.c.id == bindparam("code_id")
)
# Rules the service adds to the realm's own, shown with Keycloak's tips.
SERVICE_AVOIDS = (_l("date of birth"), _l("activation code"))


class PasswordStep:
    name = "password"
    title = _l("Choose your password")
    template = "flow/password.html"
    limits = ()

    def show(self, visit: Visit) -> ResponseReturnValue:
        return visit.page(form=PasswordForm(), tips=_tips(visit))

    def submit(self, visit: Visit) -> Outcome:
        form = PasswordForm()
        policy = visit.svc.keycloak.password_policy()
        tips = _tips(visit, policy)
        if not form.validate():
            return Stay(visit.page(400, form=form, tips=tips))
        password = form.password.data or ""
        reason = _judge(visit, password, policy)
        if reason is None:
            try:
                activation.activate(
                    visit.svc,
                    visit.engine,
                    visit.state,
                    password,
                    for_sign_in=visit.waiting_sign_in,
                )
            except PasswordRejected as exc:
                reason = exc.reason
            except activation.ActivationInProgress:
                failure = _(
                    "We are already activating your account. Wait a moment, then reload this page."
                )
            except activation.ActivationImpossible:
                return Impossible(
                    visit.page(
                        409,
                        form=PasswordForm(formdata=None),
                        tips=tips,
                        failure=_(
                            "This activation cannot be completed. Ask the IT help desk for a "
                            "new activation code."
                        ),
                    )
                )
            else:
                log.info("account activated", extra={"flow_step": "password", "outcome": "ok"})
                return Finished()
            if reason is None:  # in progress: the password is not shown again
                return Stay(
                    visit.page(409, form=PasswordForm(formdata=None), tips=tips, failure=failure)
                )
        form.password.errors = [reason]
        return Stay(visit.page(400, form=form, tips=tips))


def strength_verdict(visit: Visit) -> ResponseReturnValue:
    """The meter's live verdict on the password typed so far (JSON)."""
    password = (request.form.get("password") or "")[:1024]
    policy = visit.svc.keycloak.password_policy()
    reason = _judge(visit, password, policy) if password else None
    return jsonify(score=strength(password, _hints(visit)) if password else 0, reason=reason)


def _tips(visit: Visit, policy: PasswordPolicy | None = None) -> list[object]:
    policy = policy or visit.svc.keycloak.password_policy()
    return list(policy.tips(also_avoid=SERVICE_AVOIDS))


def _judge(visit: Visit, password: str, policy: PasswordPolicy) -> str | None:
    """The service's own verdict on a password for this student (None: send it on)."""
    svc = visit.svc
    with bind_of(svc.reads).connect() as conn:
        dob_hash = conn.execute(_DOB_HASH, {"user_id": visit.state.user_id}).scalar()
        code_hash = conn.execute(_CODE_HASH, {"code_id": visit.data.code_id}).scalar()
    return weakness(
        password,
        policy=policy,
        user_id=visit.state.user_id or "",
        hints=_hints(visit),
        hasher=svc.hasher,
        dob_hash=dob_hash,
        code_hash=code_hash,
    )


def _hints(visit: Visit) -> list[str]:
    return [visit.state.user_id or "", *visit.data.hints, "umpass"]
