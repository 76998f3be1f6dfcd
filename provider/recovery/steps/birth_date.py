"""Recovery step (when the university asks for it, `UMPASS_RECOVERY_ASKS_BIRTH_DATE`): the
date of birth as a second proof after the code. Wrong dates count on the same recovery
counter as wrong codes."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime

from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm

from provider import audit
from provider.date_input import DateOfBirthField
from provider.flows.step import Next, Outcome, Stay, Visit
from provider.keyed_hash import Purpose
from provider.proofing import normalize_date_of_birth
from provider.recovery import counters
from provider.recovery.state import RecoveryData
from provider.recovery.steps.code import too_many_wrong
from provider.storage.models import Student


class BirthDateForm(FlaskForm):
    date_of_birth = DateOfBirthField()


class BirthDateStep:
    name = "birth-date"
    title = _l("Confirm your date of birth")
    template = "recovery/birth_date.html"
    limits = ()

    def show(self, visit: Visit[RecoveryData]) -> ResponseReturnValue:
        return visit.page(form=BirthDateForm())

    def submit(self, visit: Visit[RecoveryData]) -> Outcome[RecoveryData]:
        form = BirthDateForm()
        if not form.validate() or form.date_of_birth.data is None:
            return Stay(visit.page(400, form=form))
        svc = visit.svc
        data = visit.data
        now = datetime.now(UTC)
        user_id = visit.state.user_id or ""
        attempt = counters.begin(svc, data, now)
        # After the code, the account's own lock may show: the account is proven.
        locked_until = attempt.locked_until or attempt.account_locked_until
        if locked_until is not None:
            if attempt.account_locked:
                counters.released(svc, data)  # the typed counter's try: not a wrong one
            seconds = max(1, int((locked_until - now).total_seconds()))
            return Stay(too_many_wrong(visit, seconds, form=form))
        typed = svc.hasher.digest(
            Purpose.DATE_OF_BIRTH, normalize_date_of_birth(form.date_of_birth.data)
        )
        with svc.reads() as db:
            student = db.get(Student, user_id)
        held = student.dob_hash if student is not None else "0" * len(typed)
        if not hmac.compare_digest(typed, held):
            locks = counters.failed(svc, data, now)
            audit.record_now(svc.sessions, audit.STUDENT, "recovery.birth_date_failed", user_id)
            for lock in locks[:1]:  # one try, one lock told (both counters may lock at once)
                audit.record_now(
                    svc.sessions,
                    audit.STUDENT,
                    "recovery.locked",
                    user_id,
                    until=lock.until.isoformat(timespec="seconds"),
                )
            form.date_of_birth.refuse(_("That date of birth does not match our records."))
            return Stay(visit.page(400, form=form))
        counters.succeeded(svc, data, now)
        data.birth_date_proven = True
        return Next()
