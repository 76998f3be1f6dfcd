"""Drive the activation flow through Flask's test client as a browser would: read each
page's CSRF token, post the form, follow the redirect."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from provider.date_input import form_fields
from tests.support.inbox import Inbox

_CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


@dataclass
class StudentDetails:
    user_id: str
    code: str
    date_of_birth: date
    id_last4: str
    email: str = ""
    phone: str = ""


def csrf_token(page: TestResponse) -> str:
    match = _CSRF.search(page.get_data(as_text=True))
    assert match, "page has no CSRF token"
    return match.group(1)


class FlowClient:
    def __init__(self, client: FlaskClient, inbox: Inbox | None = None) -> None:
        self.client = client
        self.inbox = inbox

    def page(self, step: str) -> TestResponse:
        return self.client.get(f"/activate/{step}")

    def submit(self, step: str, data: dict[str, str], *, follow: bool = False) -> TestResponse:
        token = csrf_token(self.page(step))
        return self.client.post(
            f"/activate/{step}", data={"csrf_token": token, **data}, follow_redirects=follow
        )

    def identify(self, who: StudentDetails, **overrides: str) -> TestResponse:
        data = {
            "user_id": who.user_id,
            "activation_code": who.code,
            **form_fields(who.date_of_birth),
            "id_last4": who.id_last4,
            **overrides,
        }
        return self.submit("identify", data)

    def accept_policies(self) -> TestResponse:
        page = self.page("policies").get_data(as_text=True)
        boxes = re.findall(
            r'type="checkbox"[^>]*name="([^"]+)"|name="([^"]+)"[^>]*type="checkbox"', page
        )
        names = {a or b for a, b in boxes}
        assert names, "no policy checkboxes"
        return self.submit("policies", {name: "y" for name in names})

    def confirm_contacts(
        self,
        *,
        email: str | None = None,
        phone: str | None = None,
        new_email: str = "",
        new_phone: str = "",
        then_continue: bool = True,
    ) -> TestResponse:
        """Keep (or change) both contacts and prove each one with the code it receives
        (a kept one too, though only a new one must be: recovery needs proven contacts).

        `email` / `phone`: where the codes go (the contacts on record unless changed).
        `then_continue=False` stops once both are proven, before anything is written.
        """
        choose = {
            # The choice and the email's code in one tap, as the page offers it.
            "action": "send-email",
            "email_choice": "change" if new_email else "keep",
            "new_email": new_email,
            "phone_choice": "change" if new_phone else "keep",
            "new_phone": new_phone,
        }
        response = self.submit("contacts", choose)
        if response.status_code == 302:
            return response  # nothing left to prove
        assert response.status_code == 200, response.get_data(as_text=True)[:600]
        assert self.inbox is not None, "a FlowClient that proves contacts needs the inbox"
        for channel, to in (("email", new_email or email), ("phone", new_phone or phone)):
            assert to, f"where does the {channel} code go?"
            # A new phone's code went out with the choice; a kept one's is asked for.
            if channel != "email" and not new_phone:
                sent = self.submit("contacts", {"action": f"send-{channel}"})
                assert sent.status_code == 200, sent.get_data(as_text=True)[:600]
            code = self.inbox.email_code(to) if channel == "email" else self.inbox.sms_code(to)
            checked = self.submit(
                "contacts", {"action": f"verify-{channel}", f"code_{channel}": code}
            )
            assert checked.status_code == 200, checked.get_data(as_text=True)[:600]
        if not then_continue:
            return checked
        return self.submit("contacts", {"action": "continue"})

    def set_password(self, password: str, confirm: str | None = None) -> TestResponse:
        return self.submit(
            "password", {"password": password, "confirm": password if confirm is None else confirm}
        )
