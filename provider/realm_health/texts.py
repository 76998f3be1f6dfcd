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
