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
from flask_wtf import FlaskForm
from markupsafe import Markup
from wtforms import BooleanField

from provider.flows.step import Next, Outcome, Stay, Visit
from provider.i18n import select_locale
from provider.policies import Policy, accepted_record, documents, parse_record
from provider.policies.published import current
from provider.storage.engine import bind_of


def _form(policies: tuple[Policy, ...]) -> FlaskForm:
    class PoliciesForm(FlaskForm):
        pass

    for policy in policies:
        setattr(
            PoliciesForm,
            policy.field_name,
            BooleanField(_accept_label(policy)),
        )
    return PoliciesForm()


class PoliciesStep:
    name = "policies"
    title = _l("Campus IT policies")
    template = "flow/policies.html"
    limits = ()

    def show(self, visit: Visit) -> ResponseReturnValue:
        policies = _current(visit)
        return visit.page(form=_form(policies), policies=policies, earlier=_earlier(visit))

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
        form = _form(policies)
        if not form.validate():
            return Stay(visit.page(400, form=form, policies=policies, earlier=_earlier(visit)))
        missing = [p for p in policies if not form[p.field_name].data]
        if missing:
            for p in missing:
                form[p.field_name].errors = [
                    _("Accept “%(title)s” to continue", title=p.title_in(select_locale()))
                ]
            return Stay(visit.page(400, form=form, policies=policies, earlier=_earlier(visit)))
        at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        visit.data.accepted_policies = [accepted_record(p, at) for p in policies]
        return Next()


def _earlier(visit: Visit) -> dict[str, tuple[str, list[Policy]]]:
    """For each policy this student accepted an earlier version of: that version, and the
    versions since, each with its change summary (what the page says changed)."""
    return changes_since(visit.data.accepted_policies)


def changes_since(records: list[str]) -> dict[str, tuple[str, list[Policy]]]:
    out: dict[str, tuple[str, list[Policy]]] = {}
    for record in filter(None, map(parse_record, records)):
        later = [p for p in documents().get(record.policy_id, ()) if p.version > record.version]
        if later:
            out[record.policy_id] = (record.version, later)
    return out


def _current(visit: Visit) -> tuple[Policy, ...]:
    with bind_of(visit.svc.reads).connect() as conn:
        return current(conn)


def _accept_label(policy: Policy) -> Markup:
    """ "I accept this policy": the title and version are right above it; a screen
    reader, going from box to box, hears them too (visually hidden)."""
    named = _(
        "“%(title)s” (version %(version)s)",
        title=policy.title_in(select_locale()),
        version=policy.version,
    )
    return Markup('{} <span class="visually-hidden">{}</span>').format(
        _("I accept this policy"), named
    )
