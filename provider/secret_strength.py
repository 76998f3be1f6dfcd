"""Is a configured secret fit for production? Placeholders and guessable values are not.

A secret copied from `.env.example` (`change-me…`) is public: with the service's secret
key anyone can forge a help-desk session, with the provisioner's secret anyone can get a
token holding `manage-realm`. The service and `keycloak_config.apply` both ask this module
before they use one outside development.
"""

from __future__ import annotations

import re

# About 128 bits: 32 characters of `secrets.token_urlsafe` carry 192.
MIN_LENGTH = 32
# Random text of 32+ characters repeats few of them; "aaaa…" or "abab…" do not pass.
MIN_DISTINCT = 12
_PLACEHOLDER = re.compile(r"change.?me|replace.?me|your.?secret|example|placeholder", re.I)


def weakness(value: str) -> str | None:
    """Why `value` is not a usable secret (a short phrase), or None when it is."""
    if _PLACEHOLDER.search(value):
        return "is a placeholder"
    if len(value) < MIN_LENGTH:
        return f"is shorter than {MIN_LENGTH} characters"
    if len(set(value)) < MIN_DISTINCT:
        return "is not random (too few different characters)"
    return None


def refusal(name: str, value: str) -> str | None:
    """The one-line message naming the variable, or None for a usable secret."""
    why = weakness(value)
    if why is None:
        return None
    return (
        f"{name} {why}: set it to {MIN_LENGTH}+ random characters, e.g. the output of "
        "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
    )
