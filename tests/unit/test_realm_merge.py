"""The merge rules: the extension's settings are floors, the realm's stricter values stay,
and the realm's own sign-in steps survive inside the extension's flows."""

from __future__ import annotations

from typing import Any

import pytest

from keycloak_config import flow_merge
from keycloak_config.merge import (
    Setting,
    merge_policy,
    merge_profile,
    merged_locales,
    merged_value,
    unmerge_policy,
)

OURS = (
    "length(12) and maxLength(128) and notUsername(undefined) and notEmail(undefined) "
    "and passwordBlacklist(umpass-common-passwords.txt)"
)


def test_a_stricter_realm_policy_keeps_its_rules_and_gains_ours() -> None:
    merged = merge_policy("length(14) and passwordHistory(5)", OURS)
    assert merged.policy == (
        "length(14) and passwordHistory(5) and maxLength(128) and notUsername(undefined) "
        "and notEmail(undefined) and passwordBlacklist(umpass-common-passwords.txt)"
    )
    assert merged.kept == ["length(14)", "passwordHistory(5)"]


def test_a_weaker_rule_is_raised_and_the_realm_blocklist_stays() -> None:
    merged = merge_policy("length(8) and maxLength(256) and passwordBlacklist(uni.txt)", OURS)
    assert "length(12)" in merged.policy and "maxLength(128)" in merged.policy
    assert "passwordBlacklist(uni.txt)" in merged.policy  # Keycloak allows one blocklist
    assert "umpass-common-passwords.txt" not in merged.policy
    assert "length(8) → length(12)" in merged.raised


def test_merging_twice_changes_nothing() -> None:
    once = merge_policy("length(14) and digits(2)", OURS).policy
    assert merge_policy(once, OURS).policy == once
    assert merge_policy(once, OURS).raised == []


@pytest.mark.parametrize(
    ("rule", "floor", "current", "expected"),
    [
        ("at_most", 5, 3, 3),  # fewer failures before a lockout is stricter: kept
        ("at_most", 5, 30, 5),
        ("at_least", 900, 1800, 1800),
        ("at_least", 900, 60, 900),
        ("one_of_at_least", "external", "all", "all"),
        ("one_of_at_least", "external", "none", "external"),
        ("required", True, False, True),
        ("fill_empty", "en", "de", "de"),
        ("fill_empty", "en", None, "en"),
    ],
)
def test_setting_floors(rule: str, floor: Any, current: Any, expected: Any) -> None:
    assert merged_value(Setting("k", rule, floor, ""), current) == expected


def test_locales_are_added_never_replaced() -> None:
    assert merged_locales(["en", "de"], ["en", "zh-TW", "pt"]) == ["en", "de", "zh-TW", "pt"]


def test_profile_keeps_the_realm_attributes_groups_and_policy() -> None:
    department = {
        "name": "department",
        "validations": {"length": {"max": 64}},
        "annotations": {"inputHelperTextBefore": "Your department"},
        "group": "staff-data",
    }
    current = {
        "attributes": [{"name": "username"}, department],
        "groups": [{"name": "staff-data"}],
        "unmanagedAttributePolicy": "ADMIN_EDIT",
    }
    ours = {
        "attributes": [{"name": "activation_state", "permissions": {"edit": ["admin"]}}],
        "groups": [{"name": "umpass"}],
    }
    merged = merge_profile(current, ours)
    assert merged.profile["unmanagedAttributePolicy"] == "ADMIN_EDIT"
    assert [a["name"] for a in merged.profile["attributes"]] == [
        "username",
        "department",
        "activation_state",
    ]
    assert merged.profile["attributes"][1] == department
    assert [g["name"] for g in merged.profile["groups"]] == ["staff-data", "umpass"]
    assert merge_profile(merged.profile, ours).added_attributes == []


def test_an_attribute_the_realm_declared_is_tightened_and_remembered() -> None:
    theirs = {
        "name": "phone_number",
        "permissions": {"edit": ["admin", "user"]},
        "validations": {"length": {"max": 20}},
        "group": "contact",
        "annotations": {"inputType": "html5-tel"},
    }
    mine = {
        "name": "phone_number",
        "permissions": {"edit": ["admin"]},
        "validations": {"pattern": {"pattern": "^\\+"}},
        "group": "umpass",
    }
    merged = merge_profile({"attributes": [theirs]}, {"attributes": [mine]})
    assert merged.changed_attributes == {"phone_number": theirs}
    result = merged.profile["attributes"][0]
    assert result["permissions"]["edit"] == ["admin"]
    assert result["validations"] == {"length": {"max": 20}, "pattern": {"pattern": "^\\+"}}
    assert (result["group"], result["annotations"]) == ("contact", {"inputType": "html5-tel"})
    assert merge_profile(merged.profile, {"attributes": [mine]}).changed_attributes == {}


def _builtin_browser() -> list[dict[str, Any]]:
    return [
        {"authenticator": "auth-cookie", "requirement": "ALTERNATIVE"},
        {"authenticator": "auth-spnego", "requirement": "ALTERNATIVE"},
        {"authenticator": "identity-provider-redirector", "requirement": "ALTERNATIVE"},
        {
            "flow": "forms",
            "requirement": "ALTERNATIVE",
            "executions": [
                {"authenticator": "auth-username-password-form", "requirement": "REQUIRED"},
                {
                    "flow": "2FA",
                    "requirement": "CONDITIONAL",
                    "executions": [
                        {"authenticator": "conditional-user-configured", "requirement": "REQUIRED"},
                        {"authenticator": "auth-otp-form", "requirement": "ALTERNATIVE"},
                        {"authenticator": "webauthn-authenticator", "requirement": "ALTERNATIVE"},
                    ],
                },
            ],
        },
    ]


def _steps(nodes: list[dict[str, Any]]) -> list[str]:
    return [n.get("authenticator") or f"[{n['flow']}]" for n in nodes]


def test_browser_flow_keeps_every_way_in_and_every_second_factor() -> None:
    source = _builtin_browser()
    tree = flow_merge.browser(source, "uni browser")
    assert _steps(tree) == ["[sign in]", "[pending: refused]"]
    sign_in = tree[0]["executions"]
    assert _steps(sign_in) == [
        "auth-cookie",
        "auth-spnego",
        "identity-provider-redirector",
        "[forms]",
    ]
    forms = sign_in[3]["executions"]
    assert _steps(forms) == [
        "auth-username-form",
        "[pending: to activation]",
        "[not pending: sign in]",
    ]
    not_pending = forms[2]["executions"]
    assert _steps(not_pending) == ["conditional-user-attribute", "auth-password-form", "[2FA]"]
    assert not_pending[2] == source[3]["executions"][1]  # the realm's 2FA, whole
    assert source == _builtin_browser()  # the realm's tree itself is untouched


def test_a_pending_account_never_reaches_a_password_form() -> None:
    forms = flow_merge.browser(_builtin_browser(), "b")[0]["executions"][3]["executions"]
    pending = forms[1]["executions"]
    assert _steps(pending) == [
        "conditional-user-attribute",
        "identity-provider-redirector",
        "[pending: activation unavailable]",
    ]
    assert pending[0]["config"]["not"] == "false"
    assert pending[2]["executions"][0]["authenticator"] == "deny-access-authenticator"


def _pending_branches(tree: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    found = []
    for node in tree:
        if node.get("flow") == "pending: to activation":
            found.append(node["executions"])
        found += _pending_branches(node.get("executions", []))
    return found


def test_the_typed_user_id_goes_on_only_where_keycloak_offers_the_step() -> None:
    """The decision, from Keycloak's list of authenticators: with the project's JAR
    deployed, the pending branch first passes the username on as login_hint; without it
    the flow is exactly what it was."""
    for source in (
        _builtin_browser(),
        [  # an alternative username-password form, split in place
            {
                "flow": "forms",
                "requirement": "REQUIRED",
                "executions": [
                    {
                        "authenticator": "auth-x509-client-username-form",
                        "requirement": "ALTERNATIVE",
                    },
                    {"authenticator": "auth-username-password-form", "requirement": "ALTERNATIVE"},
                ],
            }
        ],
    ):
        tree = flow_merge.browser(source, "b")
        (before,) = _pending_branches(tree)
        without = ["auth-cookie", "identity-provider-redirector", "auth-username-form"]
        assert flow_merge.pass_user_id_on(tree, without) == tree

        offered = [*without, flow_merge.LOGIN_HINT_STEP]
        carried = flow_merge.pass_user_id_on(tree, offered)
        assert tree == flow_merge.browser(source, "b")  # a new tree; the old one untouched
        (after,) = _pending_branches(carried)
        assert _steps(after) == [
            "conditional-user-attribute",
            flow_merge.LOGIN_HINT_STEP,
            "[pending: to activation or refused]",
        ]
        assert after[0] == before[0]
        assert after[1]["requirement"] == "REQUIRED" and "config" not in after[1]
        # Keycloak ignores ALTERNATIVE steps beside a REQUIRED one: the redirector and its
        # deny fallback, unchanged, go into a REQUIRED sub-flow of their own.
        assert after[2]["requirement"] == "REQUIRED"
        assert after[2]["executions"] == before[1:]
        assert _steps(before[1:]) == [
            "identity-provider-redirector",
            "[pending: activation unavailable]",
        ]
        # Nothing else of the flow changed.
        assert _strip_pending(carried) == _strip_pending(tree)


def test_the_policy_gate_is_the_last_step_where_keycloak_offers_it() -> None:
    """After every way in (password, cookie, another provider) and the pending refusal, at
    the top: no sign-in reaches an application without passing it."""
    tree = flow_merge.browser(_builtin_browser(), "b")
    urls = {"current_url": "http://svc/policies/current", "page_url": "https://svc/policies/review"}
    assert flow_merge.gate_policies(tree, ["auth-cookie"], **urls) == tree
    gated = flow_merge.gate_policies(tree, [flow_merge.POLICY_GATE_STEP], **urls, cache_seconds="0")
    assert gated[:-1] == tree and tree == flow_merge.browser(_builtin_browser(), "b")
    assert gated[-1] == {
        "authenticator": flow_merge.POLICY_GATE_STEP,
        "requirement": "REQUIRED",
        "config": {**urls, "cache_seconds": "0"},
    }


def _strip_pending(tree: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {**n, "executions": _strip_pending(n["executions"])}
        if "executions" in n and n.get("flow") != "pending: to activation"
        else ({**n, "executions": "…"} if "executions" in n else n)
        for n in tree
    ]


def test_a_browser_flow_without_a_username_form_is_refused_with_what_to_do() -> None:
    only_kerberos = [{"authenticator": "auth-spnego", "requirement": "REQUIRED"}]
    with pytest.raises(flow_merge.FlowMergeError, match="bind a browser flow with a username"):
        flow_merge.browser(only_kerberos, "kerberos only")


def test_guards_go_after_the_step_that_proves_who_it_is() -> None:
    direct = [
        {"authenticator": "direct-grant-validate-username", "requirement": "REQUIRED"},
        {"authenticator": "direct-grant-validate-password", "requirement": "REQUIRED"},
        {"flow": "otp", "requirement": "CONDITIONAL", "executions": []},
    ]
    assert _steps(flow_merge.direct_grant(direct, "d")) == [
        "direct-grant-validate-username",
        "direct-grant-validate-password",
        "[pending: refused]",
        "[otp]",
    ]
    with pytest.raises(
        flow_merge.FlowMergeError, match="has no enabled direct-grant-validate-password step"
    ):
        flow_merge.direct_grant(direct[:1], "d")


def test_the_reset_flow_only_refuses_whatever_the_realm_had() -> None:
    """Students reset at the service's /recover/: nothing of Keycloak's reset (choose an
    account, email it a link, set a password) runs, not even the first step."""
    reset = [
        {"authenticator": "reset-credentials-choose-user", "requirement": "REQUIRED"},
        {"authenticator": "reset-credential-email", "requirement": "REQUIRED"},
        {"authenticator": "reset-password", "requirement": "REQUIRED"},
    ]
    refuse = [
        {
            "authenticator": "deny-access-authenticator",
            "requirement": "REQUIRED",
            "config": {"denyErrorMessage": "resetCredentialNotAllowedMessage"},
        }
    ]
    assert flow_merge.reset_credentials(reset, "r") == refuse
    assert flow_merge.reset_credentials([], "no email step") == refuse


def test_a_disabled_form_is_not_the_one_split() -> None:
    forms = [
        {"authenticator": "auth-username-password-form", "requirement": "DISABLED"},
        {"authenticator": "auth-username-form", "requirement": "REQUIRED"},
        {"authenticator": "webauthn-authenticator-passwordless", "requirement": "REQUIRED"},
    ]
    source = [{"flow": "forms", "requirement": "ALTERNATIVE", "executions": forms}]
    split = flow_merge.browser(source, "passkeys")[0]["executions"][0]["executions"]
    assert _steps(split) == [
        "auth-username-password-form",  # still there, still disabled
        "auth-username-form",
        "[pending: to activation]",
        "[not pending: sign in]",
    ]
    assert split[0]["requirement"] == "DISABLED"
    not_pending = split[3]["executions"]
    assert _steps(not_pending) == [
        "conditional-user-attribute",
        "webauthn-authenticator-passwordless",  # no password step is invented
    ]


def test_an_alternative_form_is_split_in_place_beside_the_other_ways_in() -> None:
    forms = [
        {"authenticator": "auth-x509-client-username-form", "requirement": "ALTERNATIVE"},
        {"authenticator": "auth-username-password-form", "requirement": "ALTERNATIVE"},
    ]
    source = [{"flow": "forms", "requirement": "REQUIRED", "executions": forms}]
    split = flow_merge.browser(source, "x509")[0]["executions"][0]["executions"]
    assert _steps(split) == ["auth-x509-client-username-form", "[username first]"]
    assert split[1]["requirement"] == "ALTERNATIVE"
    assert _steps(split[1]["executions"]) == [
        "auth-username-form",
        "[pending: to activation]",
        "[not pending: sign in]",
    ]


def test_a_username_form_with_nothing_after_it_is_refused() -> None:
    forms = [{"authenticator": "auth-username-form", "requirement": "REQUIRED"}]
    source = [{"flow": "forms", "requirement": "ALTERNATIVE", "executions": forms}]
    with pytest.raises(flow_merge.FlowMergeError, match="asks nothing after the username"):
        flow_merge.browser(source, "username only")


def test_after_another_provider_everyone_but_pending_gets_through() -> None:
    tree = flow_merge.post_broker_login(None)
    assert _steps(tree) == ["[pending: refused]", "allow-access-authenticator"]


def test_rules_without_a_number_mean_keycloak_defaults() -> None:
    merged = merge_policy("length and passwordHistory(5)", OURS)
    assert merged.policy.startswith("length(12) and passwordHistory(5)")  # bare length is 8
    assert merge_policy("length()", OURS).policy.startswith("length(12)")
    with pytest.raises(ValueError, match="cannot read"):
        merge_policy("length(12) and (", OURS)


def test_uninstall_undoes_only_the_extension_rules() -> None:
    merged = merge_policy("length(8) and passwordHistory(5)", OURS)
    assert merged.changes["length"] == (True, "8", "12")
    assert merged.changes["maxLength"] == (False, None, "128")
    # Nothing changed since: the realm's own policy comes back.
    assert unmerge_policy(merged.policy, merged.changes) == "length(8) and passwordHistory(5)"
    # An admin raised length to 16 and added digits(2) since: both are theirs and stay.
    since = merged.policy.replace("length(12)", "length(16)") + " and digits(2)"
    assert unmerge_policy(since, merged.changes) == (
        "length(16) and passwordHistory(5) and digits(2)"
    )


def test_a_provider_own_post_login_steps_keep_their_meaning() -> None:
    own = [
        {"authenticator": "auth-otp-form", "requirement": "ALTERNATIVE"},
        {"authenticator": "webauthn-authenticator", "requirement": "ALTERNATIVE"},
    ]
    tree = flow_merge.post_broker_login(own)
    # The pending check first (no password form of theirs before it); their alternatives
    # inside a sub-flow of their own, not beside a REQUIRED step that would void them.
    assert _steps(tree) == [
        "[pending: refused]",
        "[the provider's own steps]",
        "allow-access-authenticator",
    ]
    assert tree[1]["executions"] == own
    name = flow_merge.post_broker_name("post (v2): a/b")
    assert name == "umpass after other providers after post -v2- a-b"
    assert flow_merge.is_post_broker_copy(f"{name} 0a1b2c")
    assert not flow_merge.is_post_broker_copy("umpass after other providers")
