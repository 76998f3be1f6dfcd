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
- reset credentials: a pending account is refused after the email link is followed
  (only the mailbox's owner learns the state); the rest stays.
- first broker login (the realm's default, used by its other identity providers): a
  pending account linked through another provider is refused at the end.

Where a flow lacks the step the extension needs, `FlowMergeError` says what to do.
"""

from __future__ import annotations

import copy
from typing import Any

Node = dict[str, Any]

PENDING_MESSAGE = "umpassActivationUnavailable"
ACTIVATION_PROVIDER = "umpass-activation"


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
        "flow": "pending: to activation",
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


_USERNAME_PASSWORD = "auth-username-password-form"  # noqa: S105 (a step name)
_USERNAME = "auth-username-form"
_PASSWORD = "auth-password-form"  # noqa: S105 (a step name)


def _find_forms(nodes: list[Node]) -> Node | None:
    """The sub-flow whose own steps include the username (and password) form."""
    for node in nodes:
        if "flow" not in node or node["requirement"] == "DISABLED":
            continue
        steps = [n.get("authenticator") for n in node["executions"]]
        if _USERNAME_PASSWORD in steps or _USERNAME in steps:
            return node
        found = _find_forms(node["executions"])
        if found is not None:
            return found
    return None


def browser(source: list[Node], source_alias: str) -> list[Node]:
    tree = copy.deepcopy(source)
    forms = _find_forms(tree)
    if forms is None:
        raise FlowMergeError(
            f"the realm's browser flow {source_alias!r} has no username form inside a "
            "sub-flow, so pending accounts cannot be told apart before a password is asked: "
            "bind a browser flow with a username-password form (Keycloak's built-in "
            "'browser' has one), then run apply again"
        )
    steps = forms["executions"]
    at = next(
        i for i, n in enumerate(steps) if n.get("authenticator") in (_USERNAME_PASSWORD, _USERNAME)
    )
    after = steps[at + 1 :]
    if steps[at]["authenticator"] == _USERNAME_PASSWORD:
        after = [{"authenticator": _PASSWORD, "requirement": "REQUIRED"}, *after]
    if not any(n.get("requirement") in ("REQUIRED", "ALTERNATIVE", "CONDITIONAL") for n in after):
        raise FlowMergeError(
            f"the realm's browser flow {source_alias!r} asks nothing after the username "
            "form, so an active account would sign in without a password: add the "
            "password step after it, then run apply again"
        )
    forms["executions"] = [
        *steps[:at],
        {"authenticator": _USERNAME, "requirement": "REQUIRED"},
        _to_activation(),
        {
            "flow": "not pending: sign in",
            "requirement": "CONDITIONAL",
            "executions": [_is_pending(negate=True), *after],
        },
    ]
    return [
        {"flow": "sign in", "requirement": "REQUIRED", "executions": tree},
        pending_refused(),
    ]


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
    return _guarded_after(source, source_alias, "reset-credential-email", "reset credentials")


def first_broker_login(source: list[Node], source_alias: str) -> list[Node]:
    del source_alias  # every first-broker-login flow ends with a known user
    return [*copy.deepcopy(source), pending_refused()]


# The realm bindings the extension takes over, with what builds its flow and the
# built-in flow Keycloak binds there by default.
DERIVED = {
    "browserFlow": ("umpass browser", browser, "browser"),
    "directGrantFlow": ("umpass direct grant", direct_grant, "direct grant"),
    "resetCredentialsFlow": ("umpass reset credentials", reset_credentials, "reset credentials"),
    "firstBrokerLoginFlow": (
        "umpass other providers first login",
        first_broker_login,
        "first broker login",
    ),
}
