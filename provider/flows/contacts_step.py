"""Step 3: keep or change the phone and email, and prove each new or unconfirmed one.

Two stages on one page: *choose* (keep what is on record, or type a new one), then
*verify* (for each contact that needs it: "Send code", then "Verify"). "Continue" writes
the proven contacts to Keycloak (nothing unproven ever is) and sends a notice to a
contact that was replaced.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from typing import Any

from flask import render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from flask_wtf import FlaskForm
from sqlalchemy.exc import SQLAlchemyError
from wtforms import RadioField, SelectChoice, StringField
from wtforms.validators import Length, Optional

from provider.contact_input import (
    ContactRejected,
    PhonePolicy,
    clean_email,
    clean_phone,
    mask_email,
    mask_phone,
)
from provider.delivery import DeliveryFailed
from provider.delivery import messages as texts
from provider.flows import send_budget, verification
from provider.flows.engine import FlowEngine, FlowState
from provider.keycloak import PHONE_NUMBER, Conflict, InvalidValue
from provider.services import Services

log = logging.getLogger(__name__)
CHANNELS = ("email", "phone")
# Each message names the channel; whole sentences per channel translate better than
# a label dropped into one sentence.


KEEP_OR_CHANGE = [
    SelectChoice(value="keep", label=_l("Keep it")),
    SelectChoice(value="change", label=_l("Use a different one")),
]


class ChooseForm(FlaskForm):
    email_choice = RadioField(choices=KEEP_OR_CHANGE, default="keep")
    new_email = StringField(_l("New email address"), validators=[Optional(), Length(max=254)])
    phone_choice = RadioField(choices=KEEP_OR_CHANGE, default="keep")
    new_phone = StringField(
        _l("New mobile number"),
        validators=[Optional(), Length(max=32)],
        description=_l("With the country code if not from Macau, for example +852 9123 4567."),
    )


class VerifyForm(FlaskForm):
    code_email = StringField(_l("Code from the email"), validators=[Optional(), Length(max=12)])
    code_phone = StringField(
        _l("Code from the text message"), validators=[Optional(), Length(max=12)]
    )


def on_record(state: FlowState) -> dict[str, dict[str, Any]]:
    return state.data.get("on_record", {})


class ContactsStep:
    def __init__(self, svc: Services, engine: FlowEngine, state: FlowState) -> None:
        self.svc = svc
        self.engine = engine
        self.state = state

    # -- rendering -------------------------------------------------------------------

    def page(self, status: int = 200, **context: Any) -> ResponseReturnValue:
        from provider.flows.views import page_context

        pending = self.state.data.get("pending")
        now = datetime.now(UTC)
        waits = {}
        if pending is not None:
            for channel, item in pending.items():
                if not item.get("verified"):
                    waits[channel] = verification.wait_before_resend(
                        self.svc.reads, self.svc.hasher, channel, self._value(channel), now
                    )
        context.setdefault("choose", ChooseForm(formdata=None) if pending is None else None)
        context.setdefault("verify", VerifyForm(formdata=None) if pending is not None else None)
        body = render_template(
            "flow/contacts.html",
            on_record=on_record(self.state),
            pending=pending,
            waits=waits,
            **page_context("contacts"),
            **context,
        )
        headers = {}
        if status == 429 and "retry_after" in context:
            headers["Retry-After"] = str(context["retry_after"])
        return body, status, headers

    # -- actions ---------------------------------------------------------------------

    def handle(self) -> ResponseReturnValue | None:
        """None means "go to the next step"."""
        action = request.form.get("action", "")
        if action == "choose" or self.state.data.get("pending") is None:
            return self.choose()
        if action == "change":
            self.state.data.pop("pending", None)
            self.engine.save(self.state)
            return self.page()
        pending = self.state.data["pending"]
        if action.startswith("send-") and action[5:] in pending:
            return self.send(action[5:])
        if action.startswith("verify-") and action[7:] in pending:
            return self.verify(action[7:])
        if action == "continue":
            return self.finish()
        return self.page()

    def choose(self) -> ResponseReturnValue | None:
        form = ChooseForm()
        if not form.validate():
            return self.page(400, choose=form)
        record = on_record(self.state)
        pending: dict[str, dict[str, Any]] = {}
        policy = PhonePolicy(country_codes=self.svc.settings.delivery.phone_country_codes)
        for channel, cleaner in (
            ("email", clean_email),
            ("phone", lambda v: clean_phone(v, policy)),
        ):
            choice = form[f"{channel}_choice"].data
            field = form[f"new_{channel}"]
            held = record.get(channel, {})
            if choice == "change" or not held.get("masked"):
                try:
                    value = cleaner(field.data or "")
                except ContactRejected as exc:
                    field.errors = [str(exc)]
                    continue
                pending[channel] = {
                    "value": value,
                    "shown": value,
                    "replaces": bool(held.get("masked")),
                }
            elif not held.get("verified"):
                pending[channel] = {"value": None, "shown": held["masked"], "replaces": False}
        if form.errors or any(form[f"new_{c}"].errors for c in CHANNELS):
            return self.page(400, choose=form)
        if not pending:
            return None  # both on record and already proven
        self.state.data["pending"] = pending
        self.engine.save(self.state)
        return self.page()

    def send(self, channel: str) -> ResponseReturnValue:
        item = self.state.data["pending"].get(channel)
        if item is None or item.get("verified"):
            return self.page()
        value = self._value(channel)
        now = datetime.now(UTC)
        settings = self.svc.settings
        try:
            code, sent = verification.issue(
                self.svc.sessions,
                self.svc.hasher,
                flow_key=self.engine.key(self.state),
                student=self.state.user_id or "",
                channel=channel,
                value=value,
                now=now,
                caps=verification.SendCaps.from_settings(
                    settings.student_send_limit, settings.sms_daily_budget
                ),
            )
        except verification.StudentCapped as wait:
            return self.page(429, failure=_capped(wait.seconds), retry_after=wait.seconds)
        except verification.SmsBudgetSpent as spent:
            if spent.seconds is None:  # texts are off
                return self.page(503, failure=_texts_off())
            return self.page(429, failure=_budget_spent(spent.seconds), retry_after=spent.seconds)
        except verification.Throttled as wait:
            return self.page(
                429,
                failure=ngettext(
                    "You can ask for a new code in %(num)d second.",
                    "You can ask for a new code in %(num)d seconds.",
                    wait.seconds,
                ),
                retry_after=wait.seconds,
            )
        except verification.TooManyWrong:
            return self.page(400, failure=self._too_many(channel))
        minutes = int(verification.CODE_TTL.total_seconds() // 60)
        try:
            if channel == "email":
                link = self.svc.settings.base_url + url_for("flow.step", name="contacts")
                self.svc.mailer.send(texts.code_email(value, code.code, minutes, link))
            else:
                self.svc.sms.send(texts.code_sms(value, code.code, minutes))
        except DeliveryFailed:
            verification.forget_send(self.svc.sessions, sent)
            log.warning("code not delivered", extra={"action": f"send-{channel}"})
            return self.page(
                503,
                failure=_("We couldn't send the code to your email address. Please try again.")
                if channel == "email"
                else _("We couldn't send the code to your mobile number. Please try again."),
            )
        item["sent"] = True
        self.engine.save(self.state)
        return self.page(sent=channel)

    def verify(self, channel: str) -> ResponseReturnValue:
        form = VerifyForm()
        if not form.validate():
            return self.page(400, verify=form)
        field = form[f"code_{channel}"]
        if not (field.data or "").strip():
            field.errors = [_("Enter the 6-digit code")]
            return self.page(400, verify=form)
        try:
            verification.check(
                self.svc.sessions,
                self.svc.hasher,
                flow_key=self.engine.key(self.state),
                channel=channel,
                value=self._value(channel),
                code=field.data or "",
                now=datetime.now(UTC),
            )
        except verification.CodeWrong as wrong:
            field.errors = [
                ngettext(
                    "That code is not right. You have %(num)d try left.",
                    "That code is not right. You have %(num)d tries left.",
                    wrong.remaining,
                )
            ]
            return self.page(400, verify=form)
        except verification.CodeExpired:
            field.errors = [_("That code has expired. Ask for a new one.")]
            return self.page(400, verify=form)
        except verification.TooManyWrong:
            field.errors = [self._too_many(channel)]
            return self.page(400, verify=form)
        self.state.data["pending"][channel]["verified"] = True
        self.engine.save(self.state)
        return self.page()

    def finish(self) -> ResponseReturnValue | None:
        pending = self.state.data["pending"]
        waiting = [c for c, item in pending.items() if not item.get("verified")]
        if waiting:
            return self.page(400, failure=self._confirm_first(waiting[0]))
        keycloak_id = self.state.data["keycloak_id"]
        flow_key = self.engine.key(self.state)
        values = {channel: self._value(channel) for channel in pending}
        for channel, value in values.items():
            # The code record, not the flow's flag, decides: this exact value was proven.
            if not verification.is_verified(
                self.svc.sessions, self.svc.hasher, flow_key, channel, value
            ):
                pending[channel]["verified"] = False
                self.engine.save(self.state)
                return self.page(400, failure=self._confirm_first(channel))
        owed = self._notices_owed(keycloak_id, values)
        for channel, value in values.items():
            try:
                if channel == "email":
                    self.svc.keycloak.set_email(keycloak_id, value, verified=True)
                else:
                    self.svc.keycloak.set_phone(keycloak_id, value, verified=True)
            except Conflict:
                return self.page(400, failure=self._taken(channel))
            except InvalidValue:
                return self.page(
                    400, failure=_("That contact could not be saved. Use another one.")
                )
            # Told as soon as it is replaced, even if a later write fails.
            self._notify_replaced(channel, value, owed)
        self.state.data["on_record"] = {
            channel: {
                "masked": mask_email(self._value(channel))
                if channel == "email"
                else mask_phone(self._value(channel)),
                "verified": True,
            }
            for channel in pending
        } | {c: v for c, v in on_record(self.state).items() if c not in pending}
        self.state.data.pop("pending", None)
        self.state.data.pop("owed", None)
        return None

    # -- helpers ---------------------------------------------------------------------

    def _value(self, channel: str) -> str:
        """The clear contact a code goes to: the new one typed, or the one on record."""
        item = self.state.data["pending"][channel]
        if item.get("value"):
            return str(item["value"])
        user = self.svc.keycloak.get_user(self.state.data["keycloak_id"])
        held = user.email if channel == "email" else user.attribute(PHONE_NUMBER)
        return held or ""

    @staticmethod
    def _too_many(channel: str) -> str:
        if channel == "email":
            return _(
                "Too many wrong codes for this email address. Choose “Start again” "
                "below, or ask the IT help desk."
            )
        return _(
            "Too many wrong codes for this mobile number. Choose “Start again” below, "
            "or ask the IT help desk."
        )

    @staticmethod
    def _confirm_first(channel: str) -> str:
        if channel == "email":
            return _("Confirm your email address first.")
        return _("Confirm your mobile number first.")

    @staticmethod
    def _taken(channel: str) -> str:
        if channel == "email":
            return _("That email address belongs to another account. Use a different one.")
        return _("That contact could not be saved. Use another one.")

    def _notices_owed(self, keycloak_id: str, values: dict[str, str]) -> dict[str, str]:
        """The contacts this step replaces and has not told yet, as Keycloak held them
        before the step wrote over them.

        Kept in the flow until each is told: a retry after a fault part-way (Keycloak
        down, an answer lost, a crash) still tells the old contact, once, and never the
        new one, which Keycloak may hold by then.
        """
        kept = self.state.data.get("owed")
        owed: dict[str, str] = dict(kept or {})
        pending = self.state.data["pending"]
        unread = [c for c in values if pending[c].get("replaces") and c not in owed]
        if unread:
            old = self.svc.keycloak.get_user(keycloak_id)
            held = {"email": old.email, "phone": old.attribute(PHONE_NUMBER)}
            for channel in unread:
                if held[channel] and held[channel] != values[channel]:  # else: written, told
                    owed[channel] = str(held[channel])
        if owed != (kept or {}):
            self.state.data["owed"] = owed
            self.engine.save(self.state)  # before the first write
        return owed

    def _notify_replaced(self, channel: str, value: str, owed: dict[str, str]) -> None:
        """Tell the contact that was replaced; a failure here must not stop the student."""
        old = owed.get(channel)
        if old is None:
            return
        if old == value:  # the student went back and kept it after all
            del owed[channel]
            return
        try:
            if channel == "email":
                self.svc.mailer.send(texts.notice_email(old))
            else:
                self.svc.sms.send(texts.notice_sms(old))
                try:
                    send_budget.count_text(self.svc.sessions, datetime.now(UTC))
                except SQLAlchemyError:  # sent all the same; only the day's count misses it
                    log.warning("replacement notice not counted", extra={"action": "notice"})
        except DeliveryFailed:
            log.warning("replacement notice not delivered", extra={"action": "notice"})
        # Told: not again on a retry (a crash just before this line tells it twice, which
        # beats never).
        del owed[channel]
        self.engine.save(self.state)


# A wait of minutes is told in minutes; a longer one in hours, rounded up.
HOURS_FROM_SECONDS = 2 * 60 * 60


def _capped(seconds: int) -> str:
    if seconds < HOURS_FROM_SECONDS:
        return ngettext(
            "You have asked for the most codes allowed for now. You can ask for a new one "
            "in %(num)d minute.",
            "You have asked for the most codes allowed for now. You can ask for a new one "
            "in %(num)d minutes.",
            math.ceil(seconds / 60),
        )
    return ngettext(
        "You have asked for the most codes allowed for now. You can ask for a new one "
        "in about %(num)d hour.",
        "You have asked for the most codes allowed for now. You can ask for a new one "
        "in about %(num)d hours.",
        math.ceil(seconds / 3600),
    )


def _budget_spent(seconds: int) -> str:
    if seconds < HOURS_FROM_SECONDS:
        return ngettext(
            "We can't send more text messages today. You can still confirm your email "
            "address now; try your mobile number again in %(num)d minute.",
            "We can't send more text messages today. You can still confirm your email "
            "address now; try your mobile number again in %(num)d minutes.",
            math.ceil(seconds / 60),
        )
    return ngettext(
        "We can't send more text messages today. You can still confirm your email "
        "address now; try your mobile number again in about %(num)d hour.",
        "We can't send more text messages today. You can still confirm your email "
        "address now; try your mobile number again in about %(num)d hours.",
        math.ceil(seconds / 3600),
    )


def _texts_off() -> str:
    return _(
        "We can't send text messages at the moment. You can still confirm your email "
        "address now; for your mobile number, ask the IT help desk."
    )
