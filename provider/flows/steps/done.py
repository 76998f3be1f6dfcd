"""Step 5, done: the account is active; where to sign in now."""

from __future__ import annotations

from flask.typing import ResponseReturnValue
from flask_babel import lazy_gettext as _l

from provider.flows.step import Outcome, Stay, Visit


class DoneStep:
    name = "done"
    title = _l("Your account is active")
    template = "flow/done.html"
    limits = ()

    def show(self, visit: Visit) -> ResponseReturnValue:
        return visit.page(sso_url=visit.svc.settings.after_activation_url)

    def submit(self, visit: Visit) -> Outcome:
        return Stay(self.show(visit))  # nothing to submit: the page again
