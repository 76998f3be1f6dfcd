"""The answer when a budget is spent: the page again, 429, and when to try again."""

from __future__ import annotations

import math

from flask.typing import ResponseReturnValue
from flask_babel import ngettext

from provider.flows.step import Visit
from provider.recovery.state import RecoveryData


def too_many_requests(
    visit: Visit[RecoveryData], seconds: int, **context: object
) -> ResponseReturnValue:
    minutes = max(1, math.ceil(seconds / 60))
    failure = ngettext(
        "Too many codes asked for this account. Try again in %(num)d minute.",
        "Too many codes asked for this account. Try again in %(num)d minutes.",
        minutes,
    )
    return visit.page(429, {"Retry-After": str(seconds)}, failure=failure, **context)
