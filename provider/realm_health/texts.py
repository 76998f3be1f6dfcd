"""What each must-keep check is called and why it matters, in plain English message ids.

Apart from the checks themselves (checks.py), so the web page can translate a stored
result by its key without importing what reads the realm. The JSON stays English.
"""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l

REPAIR = "python -m keycloak_config.apply"

# key -> (title, why); str() of each gives the language of the request, or English.
TEXTS: dict[str, tuple[Any, Any]] = {
    "browser-flow": (
        _l("Sign-in (browser) flow is the activation's"),
        _l(
            "Bound to another flow, pending students reach a password form and are never "
            "sent to activation."
        ),
    ),
    "direct-grant-flow": (
        _l("Direct grant flow is the activation's"),
        _l("Bound to another flow, a pending account can get tokens with a password alone."),
    ),
    "first-broker-login": (
        _l("Activation provider's first and post sign-in flows are the activation's"),
        _l(
            "They link the student who comes back from activation to their own account and "
            "refuse one that is not active."
        ),
    ),
    "no-redirector-on-top": (
        _l("No Identity Provider Redirector at the top of a flow"),
        _l(
            "A redirector with a default provider, outside the pending check, sends everyone "
            "to that provider before the user ID is asked."
        ),
    ),
    "identity-provider": (
        _l("Activation identity provider's settings"),
        _l(
            "Signature checks, PKCE, the issuer and import-only sync keep a forged or replayed "
            "answer from signing anyone in."
        ),
    ),
    "activation-state-admin-only": (
        _l("activation_state is admin-only in the user profile"),
        _l(
            "If students could see or edit it, one could mark their own account active "
            "without activating."
        ),
    ),
    "duplicate-emails-off": (
        _l("Duplicate emails are off"),
        _l("A verified email must lead to exactly one account, or codes reach the wrong one."),
    ),
    "reset-credentials": (
        _l("Keycloak's own password reset is off"),
        _l(
            "Students reset at the service's recovery, by a code to a verified contact; "
            "Keycloak's reset by email link would go around it."
        ),
    ),
    "brute-force": (
        _l("Brute-force detection is on"),
        _l("Without it passwords can be guessed without limit."),
    ),
    "service-account-roles": (
        _l("Service accounts hold exactly their roles"),
        _l(
            "One more role (view-users on the activation service, say) reaches every account, "
            "staff included."
        ),
    ),
}

# A drift line, worded at page time from the parts the check stores (drift.py): the
# action's sentence around the item's phrase. `%(name)s` and `%(part)s` are the realm's
# own names, shown as code; the item is the sentence's object, so that each language can
# put it (and its article) where it belongs.
DRIFT_ACTIONS: dict[str, Any] = {
    "add": _l("Missing: apply would add %(item)s."),
    "raise": _l("Weaker than the floor: apply would raise %(item)s."),
    "change": _l("Changed: apply would put back %(item)s."),
    "remove": _l("Extra: apply would remove %(item)s."),
}

# keycloak_config.plan.ITEMS -> the phrase for one such thing (a test keeps them equal).
DRIFT_ITEMS: dict[str, Any] = {
    "realm": _l("the realm %(name)s"),
    "setting": _l("the realm setting %(name)s"),
    "password-policy": _l("the password policy"),
    "locales": _l("the languages %(name)s"),
    "profile-attribute": _l("the user-profile attribute %(name)s"),
    "profile-group": _l("the user-profile group %(name)s"),
    "realm-text": _l("the realm text %(name)s"),
    "realm-role": _l("the realm role %(name)s"),
    "client": _l("the client %(name)s"),
    "client-scope": _l("the realm roles %(part)s in the tokens of client %(name)s"),
    "claim-scope": _l("the client scope %(name)s"),
    "scope-mapper": _l("the mapper %(part)s of client scope %(name)s"),
    "realm-default-scope": _l("the client scope %(name)s among the realm's default scopes"),
    "default-scope": _l("the client scope %(part)s among the default scopes of client %(name)s"),
    "flow": _l("the flow %(name)s"),
    "binding": _l("the flow bound as %(name)s"),
    "identity-provider": _l("the identity provider %(name)s"),
    "provider-post-login": _l("the post-login flow of identity provider %(name)s"),
    "provider-mapper": _l("the mapper %(part)s of identity provider %(name)s"),
    "service-account-roles": _l("the roles %(part)s of the service account of client %(name)s"),
    "service-account-realm-roles": _l(
        "the realm roles %(part)s of the service account of client %(name)s"
    ),
    "service-account-group": _l(
        "the membership of the service account of client %(name)s in group %(part)s"
    ),
    "admin-policy": _l("the admin policy %(name)s"),
    "admin-permission": _l("the admin permission %(name)s"),
    "group": _l("the group %(name)s"),
    "group-members": _l("%(part)s accounts with an activation state to group %(name)s"),
}

NO_VALUE = _l("(none)")  # a setting the realm does not have: old → new
