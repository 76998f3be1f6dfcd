"""The service under gunicorn, as `umpass serve` runs it, in a process a test starts.

`python -m tests.support.service_process --fd N [--threads N]` serves on the listening
socket N (bound by the test, so no port is picked and then bound by someone else), with
the production gunicorn settings (provider.wsgi_server) and one worker. Settings come
from the environment as in production. Two test-only hooks, installed in the worker and
switched by files in UMPASS_TEST_CONTROL_DIR (never part of the product):

* A crash point: when a file named after a point exists, the worker removes it and kills
  itself with SIGKILL right there (no cleanup, no answer), as a process killed by the
  kernel or a lost machine would; gunicorn's master starts a fresh worker. The points
  are between the steps of the activation write (provider/flows/steps/activate.py), of the
  contacts write (provider/flows/contacts_step.py) and of recovery's (provider/recovery/
  writes.py); see CRASH_POINTS.
* `unguarded`: the gateway's already-active check sees every account as pending, as it
  does when two replicas both read the account before either wrote. Only the database
  claims then stand between parallel submits and a second Keycloak write.
"""

from __future__ import annotations

import argparse
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import Flask

from provider import wsgi_server
from provider.config import Settings, load_settings
from provider.keycloak import ACTIVATION_STATE, STATE_PENDING, KeycloakGateway

# Where each crash point sits, in the order the write passes them.
CRASH_POINTS = {
    # activation (provider/flows/steps/activate.py)
    "in-the-claims": "the flow's claim is written, the code's is next, in one transaction",
    "after-code-claim": "both are claimed; Keycloak not yet written",
    "in-the-finish": "Keycloak holds the password; the code's use and the flow's 'done' are "
    "being written, in one transaction",
    # contacts (provider/flows/contacts_step.py)
    "between-contact-writes": "the email is written to Keycloak; the phone is not",
    "after-contact-writes": "both are written; the flow has not moved on",
    # recovery (provider/recovery/writes.py)
    "at-recovery-audit": "Keycloak's writes are in; the outcome and its audit event are being "
    "recorded",
}


class _Control:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def crash_if_armed(self, point: str) -> None:
        try:
            (self.directory / point).unlink()
        except FileNotFoundError:
            return
        os.kill(os.getpid(), signal.SIGKILL)

    @property
    def unguarded(self) -> bool:
        return (self.directory / "unguarded").exists()


class HookedGateway(KeycloakGateway):
    """The production gateway with the two test hooks around its writes."""

    def __init__(self, settings: Settings, control: _Control) -> None:
        super().__init__(settings.keycloak)
        self._control = control

    def activate(
        self,
        user_id: str,
        password: str,
        *,
        attributes: Mapping[str, Sequence[str]],
        activated_at: datetime | None = None,
        for_sign_in: bool = False,
    ) -> bool:
        self._control.crash_if_armed("after-code-claim")
        return super().activate(
            user_id,
            password,
            attributes=attributes,
            activated_at=activated_at,
            for_sign_in=for_sign_in,
        )

    def set_phone(self, user_id: str, phone_e164: str, *, verified: bool = True) -> None:
        self._control.crash_if_armed("between-contact-writes")
        super().set_phone(user_id, phone_e164, verified=verified)

    def _update(self, user_id: str, change: Callable[[Mapping[str, Any]], Any]) -> None:
        if not self._control.unguarded:
            super()._update(user_id, change)
            return

        def as_if_pending(current: Mapping[str, Any]) -> Any:
            attributes = {**(current.get("attributes") or {}), ACTIVATION_STATE: [STATE_PENDING]}
            return change({**current, "attributes": attributes})

        super()._update(user_id, as_if_pending)


def _install_crash_points(control: _Control) -> None:
    from provider import audit
    from provider.flows.step import Next
    from provider.flows.steps import activate as activation
    from provider.flows.steps.contacts import ContactsStep

    claim_code = activation._claim_code
    consume_code = activation.consume_code
    finish = ContactsStep.finish
    record = audit.record

    def claim_code_hooked(*args: Any, **kwargs: Any) -> Any:
        control.crash_if_armed("in-the-claims")
        return claim_code(*args, **kwargs)

    def consume_code_hooked(*args: Any, **kwargs: Any) -> Any:
        control.crash_if_armed("in-the-finish")
        return consume_code(*args, **kwargs)

    def finish_hooked(self: ContactsStep, visit: Any) -> Any:
        outcome = finish(self, visit)
        if isinstance(outcome, Next):  # written; the engine moves the flow on next
            control.crash_if_armed("after-contact-writes")
        return outcome

    def record_hooked(session: Any, actor: str, action: str, *args: Any, **kwargs: Any) -> Any:
        if action in ("recovery.password_reset", "recovery.unlocked"):
            control.crash_if_armed("at-recovery-audit")
        return record(session, actor, action, *args, **kwargs)

    activation._claim_code = claim_code_hooked  # type: ignore[assignment]
    activation.consume_code = consume_code_hooked  # type: ignore[assignment]
    ContactsStep.finish = finish_hooked  # type: ignore[method-assign]
    audit.record = record_hooked  # type: ignore[assignment]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--threads", type=int, default=12)
    args = parser.parse_args()
    settings = load_settings()
    control = _Control(Path(os.environ["UMPASS_TEST_CONTROL_DIR"]))

    def factory() -> Flask:
        from provider import create_app

        _install_crash_points(control)
        return create_app(settings, gateway=HookedGateway(settings, control))

    options = wsgi_server.options(settings, bind=f"fd://{args.fd}", workers=1, threads=args.threads)
    wsgi_server.serve(factory, options)


if __name__ == "__main__":
    main()
