"""Merge rules for realm settings: the extension's values are floors, never overwrites.

A university's realm already has a password policy, brute-force settings and locales.
Each rule here keeps the realm's value when it is at least as strict as the extension
needs, and raises it to the extension's floor otherwise. Everything else is left alone.
Pure functions: the applier reads the realm, asks these what it should hold, and writes
only the difference.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_RULE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_-]*)\s*(?:\((.*)\))?\s*$")


@dataclass(frozen=True)
class Setting:
    """One realm setting the extension cares about, with how it merges."""

    key: str
    rule: str  # "required" | "at_most" | "at_least" | "one_of_at_least" | "fill_empty"
    value: Any
    why: str


# Stricter sslRequired values come later.
SSL_ORDER = ["none", "external", "all"]


def merged_value(setting: Setting, current: Any) -> Any:
    """What the realm should hold for `setting` given what it holds now."""
    if setting.rule == "required":
        return setting.value
    if setting.rule == "at_most":
        return setting.value if current is None else min(int(current), int(setting.value))
    if setting.rule == "at_least":
        return setting.value if current is None else max(int(current), int(setting.value))
    if setting.rule == "one_of_at_least":
        rank = SSL_ORDER.index(current) if current in SSL_ORDER else -1
        return current if rank >= SSL_ORDER.index(setting.value) else setting.value
    if setting.rule == "fill_empty":
        return current if current not in (None, "") else setting.value
    raise ValueError(f"unknown merge rule {setting.rule!r} for {setting.key}")


def rule_words(setting: Setting) -> str:
    """The merge rule in plain words, for the plan and the README."""
    value = setting.value
    if isinstance(value, bool):
        value = "on" if value else "off"
    return {
        "required": f"must be {value}",
        "at_most": f"at most {setting.value} (a lower value is kept)",
        "at_least": f"at least {setting.value} (a higher value is kept)",
        "one_of_at_least": f"at least {setting.value!r} (a stricter value is kept)",
        "fill_empty": f"{setting.value!r} only when empty",
    }[setting.rule]


# -- password policy ------------------------------------------------------------


def parse_policy(policy: str | None) -> list[tuple[str, str | None]]:
    """`length(14) and passwordHistory(5)` as [("length", "14"), ("passwordHistory", "5")]."""
    rules: list[tuple[str, str | None]] = []
    for part in (policy or "").split(" and "):
        if not part.strip():
            continue
        match = _RULE.match(part)
        if match is None:
            raise ValueError(f"cannot read password-policy rule {part!r}")
        rules.append((match.group(1), match.group(2) or None))  # `length()` is `length`
    return rules


def format_policy(rules: list[tuple[str, str | None]]) -> str:
    return " and ".join(name if arg is None else f"{name}({arg})" for name, arg in rules)


# How each of the extension's rules merges with the realm's rule of the same name.
# "max"/"min": keep the larger/smaller number; "present": keep the realm's if it has one.
POLICY_MERGE = {
    "length": "max",
    "maxLength": "min",
    "notUsername": "present",
    "notEmail": "present",
    "passwordBlacklist": "present",  # Keycloak allows one blocklist: the realm's stays
    "hashAlgorithm": "ours",  # only for --fast-hash test realms
    "hashIterations": "ours",
}


# What Keycloak uses for a rule written without a number (`length` is length(8)).
KEYCLOAK_DEFAULTS = {"length": "8", "maxLength": "64"}


@dataclass(frozen=True)
class PolicyMerge:
    policy: str
    raised: list[str]  # rules added or made stricter, in words
    kept: list[str]  # the realm's rules kept as they were
    # rule -> (the realm had it, its argument before, the argument now) for each change
    changes: dict[str, tuple[bool, str | None, str | None]]


def merge_policy(current: str | None, ours: str) -> PolicyMerge:
    """The realm's policy with the extension's rules as floors.

    Every rule of the realm stays (in its order, with its text); each of ours is added
    when missing, or tightened when the realm's is weaker.
    """
    merged = parse_policy(current)
    raised: list[str] = []
    changes: dict[str, tuple[bool, str | None, str | None]] = {}
    for name, arg in parse_policy(ours):
        at = next((i for i, (n, _) in enumerate(merged) if n == name), None)
        if at is None:
            merged.append((name, arg))
            raised.append(f"add {format_policy([(name, arg)])}")
            changes[name] = (False, None, arg)
            continue
        theirs = merged[at][1]
        chosen = theirs
        how = POLICY_MERGE.get(name, "present")
        if how in ("max", "min") and arg is not None:
            effective = theirs if theirs is not None else KEYCLOAK_DEFAULTS[name]
            picked = str((max if how == "max" else min)(int(effective), int(arg)))
            chosen = theirs if picked == effective else picked
        elif how == "ours":
            chosen = arg
        if chosen != theirs:
            merged[at] = (name, chosen)
            raised.append(f"{format_policy([(name, theirs)])} → {format_policy([(name, chosen)])}")
            changes[name] = (True, theirs, chosen)
    kept = [format_policy([rule]) for rule in parse_policy(current) if rule in merged]
    return PolicyMerge(format_policy(merged), raised, kept, changes)


def unmerge_policy(
    current: str | None, changes: Mapping[str, tuple[bool, str | None, str | None]]
) -> str:
    """Undo, rule by rule, what the extension added or raised (`changes`, as recorded
    when it did), where the realm still holds the extension's value: a rule an admin has
    changed or added since stays."""
    result: list[tuple[str, str | None]] = []
    for name, arg in parse_policy(current):
        if name in changes and arg == changes[name][2]:
            had, before, _ = changes[name]
            if had:
                result.append((name, before))
            continue
        result.append((name, arg))
    return format_policy(result)


def same_policy(a: str | None, b: str | None) -> bool:
    return sorted(parse_policy(a)) == sorted(parse_policy(b))


# -- locales ----------------------------------------------------------------------


def merged_locales(current: list[str] | None, ours: list[str]) -> list[str]:
    """The realm's locales, then any of ours it lacks."""
    have = list(current or [])
    return have + [locale for locale in ours if locale not in have]


# -- user profile -------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileMerge:
    profile: dict[str, Any]
    added_attributes: list[str]
    changed_attributes: dict[str, dict[str, Any]]  # name -> the realm's definition before
    added_groups: list[str]
    kept_attributes: list[str]


def _covers(current: Any, desired: Any) -> bool:
    if isinstance(desired, dict):
        return isinstance(current, dict) and all(
            k in current and _covers(current[k], v) for k, v in desired.items()
        )
    if isinstance(desired, list) and all(isinstance(d, str | int | bool) for d in desired):
        return isinstance(current, list) and sorted(map(str, current)) == sorted(map(str, desired))
    if isinstance(desired, list):
        return (
            isinstance(current, list)
            and len(current) == len(desired)
            and all(_covers(c, d) for c, d in zip(current, desired, strict=True))
        )
    return current == desired


# What the extension relies on in an attribute the realm already declares; its display
# name, group and annotations stay the realm's.
_NEEDED = ("permissions", "validations", "multivalued")


def _tightened(theirs: Mapping[str, Any], needed: Mapping[str, Any]) -> dict[str, Any]:
    """The realm's definition with our permissions and our validators added to its own."""
    result = {**theirs, **needed}
    if "validations" in needed:
        result["validations"] = {**(theirs.get("validations") or {}), **needed["validations"]}
    return result


def merge_profile(current: Mapping[str, Any], ours: Mapping[str, Any]) -> ProfileMerge:
    """The realm's user profile plus the extension's attributes and groups.

    Every attribute, group, validator, annotation and top-level key of the realm stays.
    An attribute of ours the realm already declares is replaced only when it lacks what
    the extension relies on (admin-only permissions, validation); its old definition is
    returned so that uninstall can put it back.
    """
    profile = {k: v for k, v in current.items()}
    attributes = [dict(a) for a in current.get("attributes", [])]
    groups = [dict(g) for g in current.get("groups", [])]
    by_name = {a["name"]: i for i, a in enumerate(attributes)}
    added: list[str] = []
    changed: dict[str, dict[str, Any]] = {}
    for attribute in ours.get("attributes", []):
        name = attribute["name"]
        if name not in by_name:
            attributes.append(dict(attribute))
            added.append(name)
            continue
        theirs = attributes[by_name[name]]
        needed = {k: attribute[k] for k in _NEEDED if k in attribute}
        if not _covers(theirs, needed):
            changed[name] = theirs
            attributes[by_name[name]] = _tightened(theirs, needed)
    group_names = {g["name"] for g in groups}
    added_groups = [g["name"] for g in ours.get("groups", []) if g["name"] not in group_names]
    groups += [dict(g) for g in ours.get("groups", []) if g["name"] in added_groups]
    profile["attributes"] = attributes
    profile["groups"] = groups
    ours_names = {a["name"] for a in ours.get("attributes", [])}
    kept = [a["name"] for a in current.get("attributes", []) if a["name"] not in ours_names]
    return ProfileMerge(profile, added, changed, added_groups, kept)
