"""Step 2, policies: each campus IT policy shown in full and accepted by its own box.

The documents and their versions are `provider.policies`; the versions shown are the ones
published now (`provider.policies.published`, read on every show and submit, so a version
published meanwhile is the one accepted). What was accepted (``id@version:time``) goes into
the flow and, at activation, onto the account.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from provider.flows.step import Next, Outcome, Stay, Visit
from provider.policies import Policy, accepted_record, changes_since, parse_record
from provider.policies.acceptance_form import acceptance_form, missing
from provider.policies.published import current
from provider.storage.engine import bind_of


class PoliciesStep:
    name = "policies"
    title = _l("Campus IT policies")
    template = "flow/policies.html"
    limits = ()

    def show(self, visit: Visit) -> ResponseReturnValue:
        policies = _current(visit)
        return visit.page(
            form=acceptance_form(policies), policies=policies, earlier=_earlier(visit)
        )

    def holds(self, visit: Visit) -> bool:
        """What the student accepted is still what is current (a version published while
        they were on a later step sends them back here before the account is activated)."""
        accepted = {r.key for r in map(parse_record, visit.data.accepted_policies) if r}
        return accepted == {p.key for p in _current(visit)}

    def reopened_message(self) -> str:
        return _(
            "A new version of a campus IT policy was published while you were activating "
            "your account. Read it and accept it to go on."
        )

    def submit(self, visit: Visit) -> Outcome:
        policies = _current(visit)
        form = acceptance_form(policies)
        if not form.validate():
            return Stay(visit.page(400, form=form, policies=policies, earlier=_earlier(visit)))
        if missing(form, policies):
            return Stay(visit.page(400, form=form, policies=policies, earlier=_earlier(visit)))
        at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        visit.data.accepted_policies = [accepted_record(p, at) for p in policies]
        return Next()


def _earlier(visit: Visit) -> dict[str, tuple[str, list[Policy]]]:
    """For each policy this student accepted an earlier version of: that version, and the
    versions since, each with its change summary (what the page says changed)."""
    return changes_since(visit.data.accepted_policies)


def _current(visit: Visit) -> tuple[Policy, ...]:
    with bind_of(visit.svc.reads).connect() as conn:
        return current(conn)
