"""The form a student accepts policy versions with: one box per policy, each required.

Shared by the activation's policies step and the review page of the policy gate."""

from __future__ import annotations

from flask_babel import gettext as _
from flask_wtf import FlaskForm
from markupsafe import Markup
from wtforms import BooleanField

from provider.i18n import select_locale
from provider.policies import Policy


def acceptance_form(policies: tuple[Policy, ...]) -> FlaskForm:
    class AcceptanceForm(FlaskForm):
        pass

    for policy in policies:
        setattr(AcceptanceForm, policy.field_name, BooleanField(_accept_label(policy)))
    return AcceptanceForm()


def missing(form: FlaskForm, policies: tuple[Policy, ...]) -> bool:
    """True, with an error on each box left empty, when not every policy was accepted."""
    left = [p for p in policies if not form[p.field_name].data]
    for policy in left:
        form[policy.field_name].errors = [
            _("Accept “%(title)s” to continue", title=policy.title_in(select_locale()))
        ]
    return bool(left)


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
