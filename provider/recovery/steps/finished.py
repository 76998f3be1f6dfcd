"""Recovery's last page: what was done, and the way to sign in (never signed in for them)."""

from __future__ import annotations

from flask.typing import ResponseReturnValue
from flask_babel import lazy_gettext as _l

from provider.flows.step import Outcome, Stay, Visit
from provider.recovery.state import RecoveryData


class FinishedStep:
    name = "finished"
    title = _l("All done")
    template = "recovery/finished.html"
    limits = ()

    def show(self, visit: Visit[RecoveryData]) -> ResponseReturnValue:
        return visit.page(
            outcome=visit.data.outcome, sign_in_url=visit.svc.settings.after_activation_url
        )

    def submit(self, visit: Visit[RecoveryData]) -> Outcome[RecoveryData]:
        return Stay(self.show(visit))
