"""A recovery code goes out, or a decoy is armed, in the same time either way.

Both the start page and "Send a new code" end here. The answer must not tell whether a
code went out, so: the per-account budgets (keyed on what was typed) are spent first and
alike for everyone; a code is made only for a recoverable account, its delivery runs off
the request (`deliver_later`), and a flow that sends nothing, or whose send a budget
refused silently, gets a decoy code record (`verification.arm_decoy`) that answers wrong
tries exactly like a real one. Every such answer is padded to `ANSWER_FLOOR_SECONDS`.
"""

from __future__ import annotations

import logging
import secrets
import time
from datetime import UTC, datetime

from provider import audit
from provider.delivery import messages as texts
from provider.delivery.background import deliver_later
from provider.flows.engine import FlowConflict, FlowEngine, FlowState
from provider.flows.state import Channel
from provider.guards import verification
from provider.keyed_hash import Purpose
from provider.limits import recovery_account_limit, recovery_contact_limit, spend
from provider.recovery.lookup import Found, canonical
from provider.recovery.state import RecoveryData
from provider.services import Services

log = logging.getLogger(__name__)

# Every start and resend answer takes at least this long, whether a code went out or not
# (a Keycloak lookup, the code's writes and a message rendered fit well within it).
ANSWER_FLOOR_SECONDS = 0.5


def budget_key(svc: Services, typed: str) -> str:
    """The per-account budgets' key: a keyed hash of what was typed, as the lookup reads it
    (never the typing)."""
    return svc.hasher.digest(
        Purpose.RECOVERY_ACCOUNT, canonical(typed, svc.settings.user_id_length)
    )


def spend_budgets(key: str, channel: Channel) -> int | None:
    """One request against the account's budget and the account-and-channel's (the
    contact's, as far as anyone outside can tell); seconds to wait when either is spent."""
    return spend(recovery_account_limit(), "recover-account", key) or spend(
        recovery_contact_limit(), "recover-contact", key, channel
    )


def decoy_contact(svc: Services, channel: Channel) -> str:
    """A contact hash nobody holds, for a flow that sends nothing."""
    return contact_of(svc, channel, f"decoy:{secrets.token_hex(16)}")


def send_or_arm(
    svc: Services,
    engine: FlowEngine[RecoveryData],
    state: FlowState[RecoveryData],
    found: Found,
    started: float,
) -> None:
    """Send a code to `found`'s verified contact for this flow, or arm the decoy; then
    wait out the floor from `started` (time.monotonic())."""
    data = state.data
    if data is None:
        raise FlowConflict  # only a stored flow sends
    now = datetime.now(UTC)
    flow_key = engine.key(state)
    sent = False
    if found.keycloak_id is not None and found.contact is not None and found.user_id:
        sent = _send(svc, flow_key, found.user_id, data.channel, found.contact, data.contact, now)
    if not sent:
        verification.arm_decoy(
            svc.sessions,
            svc.hasher,
            flow_key=flow_key,
            channel=data.channel,
            contact=data.contact,
            now=now,
            keep_live=found.keycloak_id is not None,
        )
    if found.user_id:
        audit.record_now(
            svc.sessions,
            audit.STUDENT,
            "recovery.code_sent" if sent else "recovery.code_not_sent",
            found.user_id,
            channel=data.channel,
            reason=found.reason if found.reason != "ok" or sent else "throttled",
        )
    remaining = ANSWER_FLOOR_SECONDS - (time.monotonic() - started)
    if remaining > 0:
        time.sleep(remaining)


def _send(
    svc: Services,
    flow_key: str,
    user_id: str,
    channel: Channel,
    value: str,
    contact: str,
    now: datetime,
) -> bool:
    settings = svc.settings
    try:
        code, send = verification.issue_hashed(
            svc.sessions,
            svc.hasher,
            flow_key=flow_key,
            student=user_id,
            channel=channel,
            contact=contact,
            now=now,
            caps=verification.SendCaps.from_settings(
                settings.student_send_limit, settings.sms_daily_budget
            ),
        )
    except (verification.Throttled, verification.SmsBudgetSpent, verification.TooManyWrong):
        return False  # silently: a refusal here would say the account exists
    minutes = int(verification.CODE_TTL.total_seconds() // 60)
    if channel == "email":
        mail = texts.code_email(
            value, code.code, minutes, settings.base_url + "/recover/code", recovery=True
        )
        deliver_later(
            lambda: svc.mailer.send(mail),
            lambda: verification.forget_send(svc.sessions, send),
            deadline=verification.CODE_TTL.total_seconds() / 2,
        )
    else:
        text = texts.code_sms(value, code.code, minutes, recovery=True)
        deliver_later(
            lambda: svc.sms.send(text),
            lambda: verification.forget_send(svc.sessions, send),
            deadline=verification.CODE_TTL.total_seconds() / 2,
        )
    return True


def contact_of(svc: Services, channel: Channel, value: str) -> str:
    """The contact as recovery's sends count it: apart from the activation's count of the
    same address, whose throttle a student sees (a visible "wait 60 s" there would tell
    that a recovery code just went to it). The per-student cap is still shared."""
    return verification.contact_hash(svc.hasher, f"recovery-{channel}", value)
