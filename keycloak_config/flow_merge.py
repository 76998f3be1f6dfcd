"""The extension's flows, built from the realm's own: its sign-in steps survive.

Each function takes the tree of a flow the realm uses (as `FlowBuilder.tree` reads it)
and returns the tree of the flow the extension binds in its place:

- browser: the realm's username-and-password step becomes username first; a pending
  account goes to activation (or a deny page), never to a password form; everything the
  realm asked of other accounts after the username (password, conditional OTP, WebAuthn,
  recovery codes) stays, in the not-pending branch. Every other way in the realm had
  (cookie, Kerberos, another identity provider, organizations) stays too, and a final
  check refuses a pending account that arrived by one of them.
- direct grant: a pending account is refused after the password check (so the answer
  does not say who is pending); the rest stays.
- reset credentials: every reset is refused. Students reset or unlock at the service's
  /recover/ (a code to a contact they verified); Keycloak refuses anyway while the realm's
  `resetPasswordAllowed` is off, which apply requires: this holds if it is switched on.
- after another identity provider (its post-login flow): a pending account that signs
  in through it, linked before or linked now, is refused.

When Keycloak offers the project's authenticators (keycloak_addon/login-hint),
`pass_user_id_on` adds one to the pending branch of the browser flow, so the user ID the
student typed reaches activation as `login_hint`, and `gate_policies` adds the other at the
end of the browser flow, so an active student accepts a newly published policy version
before reaching any application.

Where a flow lacks the step the extension needs, `FlowMergeError` says what to do.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Collection
from typing import Any

Node = dict[str, Any]

PENDING_MESSAGE = "umpassActivationUnavailable"
# Keycloak's own text for a refused reset, in every theme and language; the umpass theme's
# version sends the student to "Forgot your password or locked out?".
RESET_REFUSED_MESSAGE = "resetCredentialNotAllowedMessage"
ACTIVATION_PROVIDER = "umpass-activation"
_TO_ACTIVATION = "pending: to activation"
# keycloak_addon/login-hint: sets the sign-in's login_hint to the identified username.
LOGIN_HINT_STEP = "umpass-login-hint-from-user"
# keycloak_addon/login-hint: sends an active student who lacks a current policy version to
# the service's review page with a ticket signed by the realm.
POLICY_GATE_STEP = "umpass-policy-gate"


class FlowMergeError(Exception):
    """The realm's flow cannot carry the extension's steps; the message says what to do."""


def _is_pending(negate: bool) -> Node:
    return {
        "authenticator": "conditional-user-attribute",
        "requirement": "REQUIRED",
        "config": {
            "attribute_name": "activation_state",
            "attribute_expected_value": "pending",
            "not": "true" if negate else "false",
            "regex": "false",
            "include_group_attributes": "false",
        },
    }


def _deny(message: str = PENDING_MESSAGE) -> Node:
    return {
        "authenticator": "deny-access-authenticator",
        "requirement": "REQUIRED",
        "config": {"denyErrorMessage": message},
    }


def pending_refused(name: str = "pending: refused") -> Node:
    """A conditional sub-flow that stops a pending account with the activation message."""
    return {
        "flow": name,
        "requirement": "CONDITIONAL",
        "executions": [_is_pending(negate=False), _deny()],
    }


def _to_activation() -> Node:
    return {
        "flow": _TO_ACTIVATION,
        "requirement": "CONDITIONAL",
        "executions": [
            _is_pending(negate=False),
            {
                "authenticator": "identity-provider-redirector",
                "requirement": "ALTERNATIVE",
                "config": {"defaultProvider": ACTIVATION_PROVIDER},
            },
            # The redirector lets the flow go on when the provider is missing or
            # disabled: a pending account then meets a deny page, never a password form.
            {
                "flow": "pending: activation unavailable",
                "requirement": "ALTERNATIVE",
                "executions": [_deny()],
            },
        ],
    }


def pass_user_id_on(tree: list[Node], offered: Collection[str]) -> list[Node]:
    """The browser flow `tree` with the step that passes the typed user ID on to
    activation (as `login_hint`), when Keycloak offers it (`offered`: its authenticator
    ids); otherwise `tree` as it is: the student types the ID again at activation.

    The step must run before the redirector, and Keycloak ignores ALTERNATIVE steps that
    sit beside a REQUIRED one: the redirector and its deny fallback move, as they were,
    into a REQUIRED sub-flow after the step."""
    if LOGIN_HINT_STEP not in offered:
        return tree
    out = copy.deepcopy(tree)

    def walk(nodes: list[Node]) -> None:
        for node in nodes:
            if node.get("flow") == _TO_ACTIVATION:
                condition, *rest = node["executions"]
                node["executions"] = [
                    condition,
                    {"authenticator": LOGIN_HINT_STEP, "requirement": "REQUIRED"},
                    {
                        "flow": "pending: to activation or refused",
                        "requirement": "REQUIRED",
                        "executions": rest,
                    },
                ]
            elif "executions" in node:
                walk(node["executions"])

    walk(out)
    return out


def gate_policies(
    tree: list[Node],
    offered: Collection[str],
    *,
    current_url: str,
    page_url: str,
    cache_seconds: str = "30",
    refuse: bool = False,
) -> list[Node]:
    """The browser flow `tree` with the policy gate as its last step, when Keycloak offers
    it; otherwise `tree` as it is (re-acceptance then waits for the authenticator).

    Last, at the top: whichever way the student got in (a password, a passkey, the SSO
    cookie of an earlier sign-in), the gate runs once the account is known and before the
    application is reached. A pending account never gets there (refused just before). The
    same goes last in the direct grant (`refuse`: no page can be shown there, so a due
    student is refused) and after other identity providers (their sign-ins never run the
    browser flow)."""
    if POLICY_GATE_STEP not in offered:
        return tree
    gate = {
        "authenticator": POLICY_GATE_STEP,
        "requirement": "REQUIRED",
        "config": {
            "current_url": current_url,
            "page_url": page_url,
            "cache_seconds": cache_seconds,
            **({"refuse": "true"} if refuse else {}),
        },
    }
    return [*copy.deepcopy(tree), gate]


_USERNAME_PASSWORD = "auth-username-password-form"  # noqa: S105 (a step name)
_USERNAME = "auth-username-form"
_PASSWORD = "auth-password-form"  # noqa: S105 (a step name)


_FORMS = (_USERNAME_PASSWORD, _USERNAME)
_CONDITIONS = (
    "conditional-user-configured",
    "conditional-user-attribute",
    "conditional-credential",
)


def _enabled(node: Node) -> bool:
    return bool(node["requirement"] != "DISABLED")


def _form_at(steps: list[Node]) -> int | None:
    return next(
        (i for i, n in enumerate(steps) if _enabled(n) and n.get("authenticator") in _FORMS),
        None,
    )


def _find_forms(node: Node) -> tuple[Node, int] | None:
    """The first enabled (sub-)flow whose own steps hold an enabled username form, and
    where in it the form is."""
    at = _form_at(node["executions"])
    if at is not None:
        return node, at
    for child in node["executions"]:
        if "flow" in child and _enabled(child):
            found = _find_forms(child)
            if found is not None:
                return found
    return None


def _username_first(after: list[Node]) -> list[Node]:
    return [
        {"authenticator": _USERNAME, "requirement": "REQUIRED"},
        _to_activation(),
        {
            "flow": "not pending: sign in",
            "requirement": "CONDITIONAL",
            "executions": [_is_pending(negate=True), *after],
        },
    ]


def browser(source: list[Node], source_alias: str) -> list[Node]:
    root: Node = {"flow": "sign in", "requirement": "REQUIRED", "executions": copy.deepcopy(source)}
    found = _find_forms(root)
    if found is None:
        raise FlowMergeError(
            f"the realm's browser flow {source_alias!r} has no enabled username form, so "
            "pending accounts cannot be told apart before a password is asked: bind a "
            "browser flow with a username-password form (Keycloak's built-in 'browser' has "
            "one), then run apply again"
        )
    forms, at = found
    steps = forms["executions"]
    form = steps[at]
    password = [{"authenticator": _PASSWORD, "requirement": "REQUIRED"}]
    if form["requirement"] == "REQUIRED":
        # What follows a required form (a second factor) is for accounts that are not
        # pending: it moves into that branch.
        after = steps[at + 1 :]
        if form["authenticator"] == _USERNAME_PASSWORD:
            after = [*password, *after]
        if not any(_enabled(n) and n.get("authenticator") not in _CONDITIONS for n in after):
            raise FlowMergeError(
                f"the realm's browser flow {source_alias!r} asks nothing after the username "
                "form, so an active account would sign in without a password: add the "
                "password step after it, then run apply again"
            )
        forms["executions"] = [*steps[:at], *_username_first(after)]
    elif form["requirement"] == "ALTERNATIVE" and form["authenticator"] == _USERNAME_PASSWORD:
        # One way in among others (X.509, a passkey): only this one is split; the others
        # stay beside it, and the final check refuses a pending account they let in.
        steps[at] = {
            "flow": "username first",
            "requirement": "ALTERNATIVE",
            "executions": _username_first(password),
        }
    else:
        raise FlowMergeError(
            f"the realm's browser flow {source_alias!r} has its username form as "
            f"{form['requirement']}, which the extension cannot split safely: make it "
            "REQUIRED in its sub-flow, then run apply again"
        )
    return [root, pending_refused()]


def _guarded_after(source: list[Node], source_alias: str, step: str, flow: str) -> list[Node]:
    """The realm's flow with the pending check right after its top-level `step`."""
    tree = copy.deepcopy(source)
    for i, node in enumerate(tree):
        if node.get("authenticator") == step and node["requirement"] != "DISABLED":
            return [*tree[: i + 1], pending_refused(), *tree[i + 1 :]]
    raise FlowMergeError(
        f"the realm's {flow} flow {source_alias!r} has no enabled {step} step at its top "
        f"level: add it, or bind Keycloak's built-in '{flow}', then run apply again"
    )


def direct_grant(source: list[Node], source_alias: str) -> list[Node]:
    return _guarded_after(source, source_alias, "direct-grant-validate-password", "direct grant")


def reset_credentials(source: list[Node], source_alias: str) -> list[Node]:
    """Nothing of the realm's reset flow stays (its arguments go unused): a flow that only
    refuses, before any account is chosen or any email sent."""
    return [_deny(RESET_REFUSED_MESSAGE)]


def post_broker_login(source: list[Node] | None) -> list[Node]:
    """After any sign-in through another identity provider (first or later): a pending
    account is refused before anything else, then the provider's own post-login steps
    run as they did (in a sub-flow of their own, so their ALTERNATIVE steps keep their
    meaning). Keycloak never runs the browser flow after a broker callback, so this is
    where a pending account is checked."""
    # A flow in which nothing but an unmet condition ran counts as failed ("Invalid
    # username or password"): an always-successful last step lets everyone else through.
    allow = {"authenticator": "allow-access-authenticator", "requirement": "REQUIRED"}
    if not source:
        return [pending_refused(), allow]
    own = {"flow": "the provider's own steps", "requirement": "REQUIRED", "executions": source}
    return [pending_refused(), copy.deepcopy(own), allow]


POST_BROKER_NAME = "umpass after other providers"
_SAFE = r"[A-Za-z0-9 ._'-]"  # what Keycloak accepts in a flow alias
_POST_BROKER_COPY = re.compile(re.escape(POST_BROKER_NAME) + f"( after {_SAFE}+)? [0-9a-f]{{6}}")


def post_broker_name(source_alias: str | None) -> str:
    """One flow per provider flow it wraps; named only with characters Keycloak allows."""
    if not source_alias:
        return POST_BROKER_NAME
    return f"{POST_BROKER_NAME} after {re.sub(f'[^{_SAFE[1:-1]}]+', '-', source_alias)}"


def is_post_broker_copy(alias: str | None) -> bool:
    return bool(alias) and _POST_BROKER_COPY.fullmatch(str(alias)) is not None


# The realm bindings the extension takes over, with what builds its flow and the
# built-in flow Keycloak binds there by default.
DERIVED = {
    "browserFlow": ("umpass browser", browser, "browser"),
    "directGrantFlow": ("umpass direct grant", direct_grant, "direct grant"),
    "resetCredentialsFlow": ("umpass reset credentials", reset_credentials, "reset credentials"),
}
