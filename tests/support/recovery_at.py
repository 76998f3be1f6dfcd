"""The recovery's writes as they reach Keycloak, a second tab of a recovery flow, and the
same flow over real HTTP for service replicas whose Keycloak requests are counted.

A flow is put at its step by `tests.support.recovery.put_recovery_at`.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from provider.recovery.flow import COOKIE
from tests.support.fault_proxy import FaultProxy
from tests.support.flow_client import csrf_token
from tests.support.recovery import RecoveryClient
from tests.support.recovery_record import RecoveryWrites
from tests.support.replicas import HttpBrowser, Replica, Submit

# The recovery's writes as they reach Keycloak (method, path).
WRITES = {
    "set-password": ("PUT", "/admin/realms/{realm}/users/{id}/reset-password"),
    "sign-out": ("POST", "/admin/realms/{realm}/users/{id}/logout"),
    "lift-lock": ("DELETE", "/admin/realms/{realm}/attack-detection/brute-force/users/{id}"),
}


def write_request(write: str, realm: str, keycloak_id: str) -> tuple[str, str]:
    method, path = WRITES[write]
    return method, path.format(realm=realm, id=keycloak_id)


def holding(browser: RecoveryClient, flow_id: str | None) -> RecoveryClient:
    """`browser` holds the recovery flow `flow_id` (a second tab of the same flow)."""
    assert flow_id, "no stored flow to hold"
    browser.client.set_cookie(COOKIE, flow_id, path="/recover")
    return browser


def hold_recovery(browser: HttpBrowser, flow_id: str | None) -> None:
    """An HTTP browser holds a stored recovery flow, as the browser that reached it would."""
    assert flow_id, "no stored flow to hold"
    host = urlsplit(browser.base_url).hostname or ""
    browser.session.cookies.set(COOKIE, flow_id, domain=host, path="/recover")


def recovery_submit(
    browser: HttpBrowser, replica_url: str, step: str, form: dict[str, str]
) -> Submit:
    """One post of `step`'s form to a replica, its CSRF token read from the replica's page."""
    browser.base_url = replica_url
    page = browser.get(f"/recover/{step}")
    assert page.status_code == 200, f"the replica did not show {step}: {page.status_code}"
    return Submit(
        replica_url,
        f"/recover/{step}",
        browser.cookie_header(),
        {"csrf_token": csrf_token(page), **form},  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class CountedReplicas:
    """Two service replicas whose every Keycloak request passes a proxy that logs it."""

    replicas: tuple[Replica, Replica]
    keycloak: FaultProxy  # `requests`: "METHOD /path" of each, in order

    def sent(self, method: str, path: str) -> int:
        return self.keycloak.requests.count(f"{method} {path}")

    def writes_sent(self, realm: str, keycloak_id: str) -> RecoveryWrites:
        """The recovery's writes to this account the replicas sent (applied or not)."""

        def sent(write: str) -> int:
            return self.sent(*write_request(write, realm, keycloak_id))

        return RecoveryWrites(
            passwords_set=sent("set-password"),
            sign_outs=sent("sign-out"),
            locks_lifted=sent("lift-lock"),
        )
