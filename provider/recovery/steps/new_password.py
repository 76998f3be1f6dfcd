"""Recovery step: a new password, judged like the first one (the realm's policy as tips,
strength, the blocklist, the user ID and date of birth refused; Keycloak's refusal, its
password history included, as a sentence), then written by `writes.reset`."""

from __future__ import annotations

import logging

from flask import jsonify, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from provider.flows.step import Finished, Outcome, Stay, Visit
from provider.flows.steps.password_rules import PasswordForm, strength, weakness
from provider.keycloak import IdentityServiceUnavailable, PasswordRejected
from provider.password_policy import PasswordPolicy
from provider.recovery import writes
from provider.recovery.state import RecoveryData
from provider.storage.models import Student

log = logging.getLogger(__name__)

# The rule the service adds to the realm's own, shown with Keycloak's tips.
BIRTH_DATE = _l("date of birth")


class NewPasswordStep:
    name = "new-password"
    title = _l("Choose a new password")
    template = "flow/password.html"
    limits = ()

    def _page(
        self, visit: Visit[RecoveryData], status: int = 200, **context: object
    ) -> ResponseReturnValue:
        return visit.page(
            status,
            intro=_("Your new password replaces the old one for every campus service."),
            submit_label=_("Set my new password"),
            **context,
        )

    def show(self, visit: Visit[RecoveryData]) -> ResponseReturnValue:
        return self._page(visit, form=PasswordForm(), tips=_tips(visit))

    def submit(self, visit: Visit[RecoveryData]) -> Outcome[RecoveryData]:
        form = PasswordForm()
        policy = visit.svc.keycloak.password_policy()
        tips = _tips(visit, policy)
        if not form.validate():
            return Stay(self._page(visit, 400, form=form, tips=tips))
        password = form.password.data or ""
        reason = _judge(visit, password, policy)
        if reason is None:
            try:
                writes.reset(visit.svc, visit.engine, visit.state, password)
            except PasswordRejected as exc:
                reason = exc.reason
            except writes.NotRecoverable:
                return Stay(
                    self._page(visit, 409, form=form, tips=tips, failure=_not_recoverable())
                )
            except writes.WriteInProgress:
                return Stay(
                    self._page(
                        visit,
                        409,
                        form=PasswordForm(formdata=None),
                        tips=tips,
                        failure=_(
                            "We are already changing your password. Wait a moment, then reload "
                            "this page."
                        ),
                    )
                )
            except IdentityServiceUnavailable:
                # Part of the change may be in (the flow knows which): the same password
                # again finishes it. Not "nothing has been changed", which may be untrue.
                log.warning("password reset cut short", extra={"flow_step": self.name})
                return Stay(
                    self._page(
                        visit,
                        503,
                        form=PasswordForm(formdata=None),
                        tips=tips,
                        failure=_(
                            "The sign-in service did not answer, so we could not finish. "
                            "Try again in a moment with the same new password."
                        ),
                    )
                )
            else:
                log.info("password reset", extra={"flow_step": self.name, "outcome": "ok"})
                return Finished()
        form.password.errors = [reason]
        return Stay(self._page(visit, 400, form=form, tips=tips))


def strength_verdict(visit: Visit[RecoveryData]) -> ResponseReturnValue:
    """The meter's live verdict (JSON), the same judgement as the submit."""
    password = (request.form.get("password") or "")[:1024]
    policy = visit.svc.keycloak.password_policy()
    reason = _judge(visit, password, policy) if password else None
    return jsonify(score=strength(password, _hints(visit)) if password else 0, reason=reason)


def _tips(visit: Visit[RecoveryData], policy: PasswordPolicy | None = None) -> list[object]:
    policy = policy or visit.svc.keycloak.password_policy()
    return list(policy.tips(also_avoid=(BIRTH_DATE,)))


def _judge(visit: Visit[RecoveryData], password: str, policy: PasswordPolicy) -> str | None:
    svc = visit.svc
    with svc.reads() as db:
        student = db.get(Student, visit.state.user_id)
    return weakness(
        password,
        policy=policy,
        user_id=visit.state.user_id or "",
        hints=_hints(visit),
        hasher=svc.hasher,
        dob_hash=student.dob_hash if student else None,
        code_hash=None,
    )


def _hints(visit: Visit[RecoveryData]) -> list[str]:
    return [visit.state.user_id or "", "umpass"]


def _not_recoverable() -> str:
    return _("This account cannot be recovered here any more. Ask the IT help desk.")
