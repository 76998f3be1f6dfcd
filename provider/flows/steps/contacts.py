"""Step 3, contacts: keep or change the phone and email, and prove each new one.

Two stages on one page: *choose* (keep what is on record, or type a new one), then
*verify* (for each contact that needs it: "Send code", then "Verify"). As the FAQ says, a
contact kept from the Registry needs no code unless the university requires it
(`UMPASS_REQUIRE_PROOF_OF_KEPT_CONTACTS`): proving it is offered and recommended, as only
a proven contact can be used for recovery. "Continue" writes the proven contacts to
Keycloak as verified (nothing unproven ever is: a kept one left unproven stays as the
Registry gave it, unverified), sends a notice to a contact that was replaced, and records
one `student.contact_verified` event per contact written, with the flow's move past the
step (`_verified_events` argues the order).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

from flask import request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from flask_wtf import FlaskForm
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError
from wtforms import RadioField, SelectChoice, StringField
from wtforms.validators import Length, Optional

from provider import events
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
from provider.events import outbox
from provider.flows.state import CHANNELS, Channel, OnRecord, PendingContact
from provider.flows.step import Next, Outcome, Stay, StepLimit, Visit
from provider.guards import send_budget, verification
from provider.keycloak import PHONE_NUMBER, Conflict, InvalidValue
from provider.limits import send_limit

log = logging.getLogger(__name__)
# Each message names the channel: whole sentences per channel translate better than a
# label dropped into one sentence.


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


class ContactsStep:
    name = "contacts"
    title = _l("Your phone and email")
    template = "flow/contacts.html"
    # Only what may send a code spends the per-address sending budget: "Send code", and
    # any choice with a new contact typed in (its code goes out at once).
    limits = (StepLimit(send_limit, spends=lambda: _sends_codes()),)

    # -- rendering -------------------------------------------------------------------

    def show(self, visit: Visit) -> ResponseReturnValue:
        return self._page(visit)

    def _page(self, visit: Visit, status: int = 200, **context: Any) -> ResponseReturnValue:
        pending = visit.data.pending
        now = datetime.now(UTC)
        waits = {}
        if pending is not None:
            for channel, item in pending.items():
                if not item.verified:
                    waits[channel] = verification.wait_before_resend(
                        visit.svc.reads, visit.svc.hasher, channel, _value(visit, channel), now
                    )
        context.setdefault("choose", ChooseForm(formdata=None) if pending is None else None)
        context.setdefault("verify", VerifyForm(formdata=None) if pending is not None else None)
        context.setdefault("proof_optional", not visit.svc.settings.require_proof_of_kept_contacts)
        headers = {}
        if status == 429 and "retry_after" in context:
            headers["Retry-After"] = str(context["retry_after"])
        return visit.page(
            status,
            headers,
            on_record=visit.data.on_record,
            pending=pending,
            waits=waits,
            primary=_primary(pending),
            resend_texts=_resend_texts(),
            **context,
        )

    # -- actions ---------------------------------------------------------------------

    def submit(self, visit: Visit) -> Outcome:
        action = request.form.get("action", "")
        pending = visit.data.pending
        if action == "choose" or pending is None:
            return self.choose(visit, action)
        if action == "change":
            visit.data.pending = None
            visit.save()
            return Stay(self._page(visit))
        if action.startswith("send-") and action[5:] in pending:
            return Stay(self.send_keeping_typed(visit, cast(Channel, action[5:])))
        if action.startswith("verify-") and action[7:] in pending:
            return Stay(self.verify(visit, cast(Channel, action[7:])))
        if action == "continue":
            return self.confirm(visit)
        return Stay(self._page(visit))

    def choose(self, visit: Visit, action: str = "choose") -> Outcome:
        """Take the choices; `action` "send-<channel>" also sends that contact its code
        (the choose page's one tap to prove a kept contact)."""
        form = ChooseForm()
        if not form.validate():
            return Stay(self._page(visit, 400, choose=form))
        kept_optional = not visit.svc.settings.require_proof_of_kept_contacts
        record = visit.data.on_record
        pending: dict[Channel, PendingContact] = {}
        policy = PhonePolicy(country_codes=visit.svc.settings.delivery.phone_country_codes)
        cleaners: dict[Channel, Callable[[str], str]] = {
            "email": clean_email,
            "phone": lambda v: clean_phone(v, policy),
        }
        for channel, cleaner in cleaners.items():
            choice = form[f"{channel}_choice"].data
            field = form[f"new_{channel}"]
            held = record.get(channel)
            if choice == "change" or not (held and held.masked):
                try:
                    value = cleaner(field.data or "")
                except ContactRejected as exc:
                    field.errors = [str(exc)]
                    continue
                pending[channel] = PendingContact(
                    value=value, shown=value, replaces=bool(held and held.masked)
                )
            elif not held.verified:
                pending[channel] = PendingContact(
                    value=None, shown=held.masked or "", replaces=False, optional=kept_optional
                )
        if form.errors or any(form[f"new_{c}"].errors for c in CHANNELS):
            return Stay(self._page(visit, 400, choose=form))
        asked = action[5:] if action.startswith("send-") else None
        if asked not in pending and all(item.optional for item in pending.values()):
            # Nothing must be proven: on to the next step, each kept contact left as it is.
            visit.data.pending = None
            return Next()
        visit.data.pending = pending
        visit.save()
        # The codes go out at once, to the one asked for and to every contact that must
        # be proven (a new one), so the next page is where the codes are typed.
        to_send = [c for c, i in pending.items() if c == asked or not i.optional]
        return Stay(self._send_each(visit, cast(list[Channel], to_send)))

    def send_keeping_typed(self, visit: Visit, channel: Channel) -> ResponseReturnValue:
        """A "Send" on the codes page: a code typed for another contact is checked first,
        so the student who typed the email's code and then asks for the phone's keeps it."""
        form = VerifyForm()
        if form.validate():
            self._prove_typed(visit, form, skip=channel, insist=False)
        if any(form[f"code_{c}"].errors for c in CHANNELS):
            return self._page(visit, 400, verify=form)
        return self._send_each(visit, [channel])

    def _send_each(self, visit: Visit, channels: list[Channel]) -> ResponseReturnValue:
        """Send each its code, in order; the first refusal is the page's answer, with what
        was sent before it said as sent."""
        sent: list[Channel] = []
        for channel in channels:
            refused = self._send_one(visit, channel)
            if refused is not None:
                status, failure, retry_after = refused
                extra = {"retry_after": retry_after} if retry_after is not None else {}
                return self._page(visit, status, failure=failure, sent=sent, **extra)
            sent.append(channel)
        return self._page(visit, sent=sent)

    def _send_one(self, visit: Visit, channel: Channel) -> tuple[int, str, int | None] | None:
        """Issue and deliver one contact's code: None when sent (or nothing to send),
        else (status, message, seconds to wait)."""
        item = (visit.data.pending or {}).get(channel)
        if item is None or item.verified:
            return None
        value = _value(visit, channel)
        now = datetime.now(UTC)
        svc = visit.svc
        settings = svc.settings
        try:
            code, sent = verification.issue(
                svc.sessions,
                svc.hasher,
                flow_key=visit.engine.key(visit.state),
                student=visit.state.user_id or "",
                channel=channel,
                value=value,
                now=now,
                caps=verification.SendCaps.from_settings(
                    settings.student_send_limit, settings.sms_daily_budget
                ),
            )
        except verification.StudentCapped as wait:
            return 429, _capped(wait.seconds), wait.seconds
        except verification.SmsBudgetSpent as spent:
            if spent.seconds is None:  # texts are off
                return 503, _texts_off(), None
            return 429, _budget_spent(spent.seconds), spent.seconds
        except verification.Throttled as wait:
            return (
                429,
                ngettext(
                    "New code in %(num)d second.",
                    "New code in %(num)d seconds.",
                    wait.seconds,
                ),
                wait.seconds,
            )
        except verification.TooManyWrong:
            return 400, _too_many(channel), None
        minutes = int(verification.CODE_TTL.total_seconds() // 60)
        try:
            if channel == "email":
                link = settings.base_url + url_for("flow.step", name=self.name)
                svc.mailer.send(texts.code_email(value, code.code, minutes, link))
            else:
                svc.sms.send(texts.code_sms(value, code.code, minutes))
        except DeliveryFailed:
            verification.forget_send(svc.sessions, sent)
            log.warning("code not delivered", extra={"action": f"send-{channel}"})
            return (
                503,
                _("We couldn't send the code to your email address. Please try again.")
                if channel == "email"
                else _("We couldn't send the code to your mobile number. Please try again."),
                None,
            )
        item.sent = True
        visit.save()
        return None

    def verify(self, visit: Visit, channel: Channel) -> ResponseReturnValue:
        """One contact's code alone (its own "verify-<channel>")."""
        form = VerifyForm()
        if not form.validate():
            return self._page(visit, 400, verify=form)
        if not self._prove(visit, channel, form, required=True):
            return self._page(visit, 400, verify=form)
        return self._page(visit)

    def _prove(self, visit: Visit, channel: Channel, form: VerifyForm, *, required: bool) -> bool:
        """Check the code typed for `channel`: True when it proved the contact (or none
        was typed and none is `required`); else False, with the field's error set."""
        field = form[f"code_{channel}"]
        if not (field.data or "").strip():
            if required:
                field.errors = [_("Enter the 6-digit code")]
            return not required
        try:
            verification.check(
                visit.svc.sessions,
                visit.svc.hasher,
                flow_key=visit.engine.key(visit.state),
                channel=channel,
                value=_value(visit, channel),
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
            return False
        except verification.CodeExpired:
            field.errors = [_("That code has expired. Ask for a new one.")]
            return False
        except verification.TooManyWrong:
            field.errors = [_too_many(channel)]
            return False
        (visit.data.pending or {})[channel].verified = True
        visit.save()
        return True

    def confirm(self, visit: Visit) -> Outcome:
        """ "Continue" on the codes page: check every code typed (one that must be proven
        needs its code), then write and go on; any wrong code keeps the page, the right
        ones stay proven."""
        form = VerifyForm()
        if not form.validate():
            return Stay(self._page(visit, 400, verify=form))
        if not self._prove_typed(visit, form, insist=True):
            return Stay(self._page(visit, 400, verify=form))
        return self.finish(visit)

    def _prove_typed(
        self, visit: Visit, form: VerifyForm, *, insist: bool, skip: Channel | None = None
    ) -> bool:
        """Check the code typed for each contact whose code went out (but `skip`); with
        `insist`, one that must be proven needs its code. True when none was wrong."""
        proven = True
        for channel, item in (visit.data.pending or {}).items():
            if channel != skip and item.sent and not item.verified:
                required = insist and not item.optional
                proven &= self._prove(visit, channel, form, required=required)
        return proven

    def finish(self, visit: Visit) -> Outcome:
        """ "Continue": write the proven contacts to Keycloak, then on to the next step,
        recording one `student.contact_verified` event per contact written in the
        transaction that moves the flow on (see `_verified_events`)."""
        data = visit.data
        pending = data.pending or {}
        waiting = [c for c, item in pending.items() if not (item.verified or item.optional)]
        if waiting:
            return Stay(self._page(visit, 400, failure=_confirm_first(waiting[0])))
        svc = visit.svc
        flow_key = visit.engine.key(visit.state)
        # Only the proven are written; an optional one left unproven stays as it is.
        values = {channel: _value(visit, channel) for channel, i in pending.items() if i.verified}
        for channel, value in values.items():
            # The code record, not the flow's flag, decides: this exact value was proven.
            if not verification.is_verified(svc.sessions, svc.hasher, flow_key, channel, value):
                pending[channel].verified = False
                visit.save()
                return Stay(self._page(visit, 400, failure=_confirm_first(channel)))
        self._note_owed_notices(visit, values)
        for channel, value in values.items():
            try:
                if channel == "email":
                    svc.keycloak.set_email(data.keycloak_id, value, verified=True)
                else:
                    svc.keycloak.set_phone(data.keycloak_id, value, verified=True)
            except Conflict:
                return Stay(self._page(visit, 400, failure=_taken(channel)))
            except InvalidValue:
                return Stay(
                    self._page(
                        visit, 400, failure=_("That contact could not be saved. Use another one.")
                    )
                )
            # Told as soon as it is replaced, even if a later write fails.
            self._notify_replaced(visit, channel, value)
        data.on_record = {
            **data.on_record,
            **{
                channel: OnRecord(
                    mask_email(value) if channel == "email" else mask_phone(value), True
                )
                for channel, value in values.items()
            },
        }
        events_along = _verified_events(visit, values, now=datetime.now(UTC))
        data.pending = None
        data.owed = {}
        data.replaced = []
        return Next(along=events_along)

    # -- notices to a replaced contact -------------------------------------------------

    def _note_owed_notices(self, visit: Visit, values: dict[Channel, str]) -> None:
        """Keep in the flow the contacts this step replaces and has not told yet, as
        Keycloak held them before the step writes over them.

        Kept until each is told: a retry after a fault part-way (Keycloak down, an answer
        lost, a crash) still tells the old contact, once, and never the new one, which
        Keycloak may hold by then.
        """
        data = visit.data
        pending = data.pending or {}
        unread = [c for c in values if pending[c].replaces and c not in data.owed]
        added = False
        if unread:
            old = visit.svc.keycloak.get_user(data.keycloak_id)
            held: dict[Channel, str | None] = {
                "email": old.email,
                "phone": old.attribute(PHONE_NUMBER),
            }
            for channel in unread:
                was = held[channel]
                if was and was != values[channel]:  # else: written already, and told
                    data.owed[channel] = was
                    added = True
        # What the events will say: a contact replaced by a different value stays marked
        # after its notice (which forgets `owed`), so a retry's event says it as well.
        for channel, value in values.items():
            was = data.owed.get(channel)
            if was is not None and was != value and channel not in data.replaced:
                data.replaced.append(channel)
                added = True
        if added:
            visit.save()  # before the first write

    def _notify_replaced(self, visit: Visit, channel: Channel, value: str) -> None:
        """Tell the contact that was replaced; a failure here must not stop the student."""
        owed = visit.data.owed
        old = owed.get(channel)
        if old is None:
            return
        if old == value:  # the student went back and kept it after all
            del owed[channel]
            if channel in visit.data.replaced:
                visit.data.replaced.remove(channel)
            return
        svc = visit.svc
        try:
            if channel == "email":
                svc.mailer.send(texts.notice_email(old))
            else:
                svc.sms.send(texts.notice_sms(old))
                try:
                    send_budget.count_text(svc.sessions, datetime.now(UTC))
                except SQLAlchemyError:  # sent all the same; only the day's count misses it
                    log.warning("replacement notice not counted", extra={"action": "notice"})
        except DeliveryFailed:
            log.warning("replacement notice not delivered", extra={"action": "notice"})
        # Told: not again on a retry (a crash just before this line tells it twice, which
        # beats never).
        del owed[channel]
        visit.save()


def _verified_events(
    visit: Visit, values: dict[Channel, str], *, now: datetime
) -> Callable[[Connection], None]:
    """What `finish` hands the engine to write with the flow's move past this step: one
    `student.contact_verified` event per contact written, in the order written. The move
    commits before the password step can begin, so they come before the student's
    `student.activated` in the outbox (the order they are sent in). The channel is named,
    never the address or the number (downstream reads them from Keycloak).

    Why the events go in the flow's transaction, after the Keycloak writes, and not before
    or beside them:

    - Keycloak is written first. If the process dies (or the database fails) before the
      flow's move commits, the flow is still at this step with the contacts proven and
      pending, and no event was recorded. The student's retry ("Continue" again) writes
      the same values again (the same write twice leaves Keycloak as once) and records the
      events then, with the move: no event is lost.
    - An event is recorded only in the transaction that also moves the flow on, after the
      writes succeeded: no event ever says something Keycloak does not hold, and as the
      move happens once (compare-and-set on the flow's version), so do the events. A
      parallel "Continue" that lost the race records nothing; the winner recorded them.
      A parallel request that only saved the flow (a code sent) fails the move the same
      way, and the next "Continue" records them. Left open: a parallel "Use a different
      one" (the student's own two buttons at once) drops the pending contacts after the
      write landed; the contact stays verified in Keycloak without its event.
    """
    data = visit.data
    user_id = visit.state.user_id or ""
    written = [(channel, channel in data.replaced) for channel in values]

    def record(conn: Connection) -> None:
        for channel, replaced in written:
            outbox.record(
                conn,
                events.CONTACT_VERIFIED,
                user_id,
                at=now,
                keycloak_id=data.keycloak_id,
                channel=channel,
                replaced=replaced,
                changed=[channel],
            )

    return record


def _primary(pending: dict[Channel, PendingContact] | None) -> str:
    """The one action the page shows as its primary button (GOV.UK: one per page).

    Choosing, "Continue". Then "Continue" (it checks the codes typed), unless a contact
    that must be proven has no code yet: its "Send code" comes first.
    """
    if pending is None:
        return "choose"
    for channel, item in pending.items():
        if not (item.verified or item.sent or item.optional):
            return f"send-{channel}"  # its code did not go out: that comes first
    return "continue"


# Stands for the number in the countdown's sentence, which the script fills in.
_COUNT_MARK = 987654


def _resend_texts() -> dict[str, str]:
    """The wait's sentence for one second and, with "{n}", for any other number: the
    countdown script (static/js/countdown.js) words each second as the server would."""
    one = ngettext(
        "New code in %(num)d second.",
        "New code in %(num)d seconds.",
        1,
    )
    other = ngettext(
        "New code in %(num)d second.",
        "New code in %(num)d seconds.",
        _COUNT_MARK,
    )
    return {"one": one, "other": other.replace(str(_COUNT_MARK), "{n}")}


def _value(visit: Visit, channel: Channel) -> str:
    """The clear contact a code goes to: the new one typed, or the one on record."""
    item = (visit.data.pending or {})[channel]
    if item.value:
        return item.value
    user = visit.svc.keycloak.get_user(visit.data.keycloak_id)
    held = user.email if channel == "email" else user.attribute(PHONE_NUMBER)
    return held or ""


def _too_many(channel: Channel) -> str:
    if channel == "email":
        return _(
            "Too many wrong codes for this email address. Choose “Start again” "
            "below, or ask the IT help desk."
        )
    return _(
        "Too many wrong codes for this mobile number. Choose “Start again” below, "
        "or ask the IT help desk."
    )


def _confirm_first(channel: Channel) -> str:
    if channel == "email":
        return _("Confirm your email address first.")
    return _("Confirm your mobile number first.")


def _taken(channel: Channel) -> str:
    if channel == "email":
        return _("That email address belongs to another account. Use a different one.")
    return _("That contact could not be saved. Use another one.")


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


def _sends_codes() -> bool:
    """Whether this request may send a code (what the sending budget is spent on)."""
    if request.method != "POST":
        return False
    # Any action may reach the choice (a flow with nothing pending takes every post as
    # one), so a typed new contact counts whatever the action says.
    if request.form.get("action", "").startswith("send-"):
        return True
    return any(request.form.get(f"new_{c}", "").strip() for c in CHANNELS)
