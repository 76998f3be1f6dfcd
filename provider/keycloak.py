"""The running service's one gateway to Keycloak's admin REST API.

Nothing else in the running service calls the admin API (the help desk signs staff in
through the realm's OIDC endpoints, helpdesk/auth.py; the bulk intake, intake/provision.py,
has a credential of its own). Callers get small typed values and a short list of typed
errors:

* `IdentityServiceUnavailable`: Keycloak unreachable, slow, 5xx, or our credential
  refused (`ServiceCredentialRejected`). Views show one "try again later" page;
  nothing has changed.
* `PasswordRejected`: the realm's password policy refused the password; `.reason` is a
  plain sentence for the student.
* `UserNotFound`, `Conflict`, `InvalidValue`: the user is gone, a unique value is
  taken, or the user profile refused a value.

python-keycloak keeps its token and headers as shared mutable state and is not
thread-safe, so connections live in a small pool and each call borrows one exclusively.
Each pooled connection is long-lived: its admin token is fetched once and refreshed
by python-keycloak near expiry, never per call.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import requests
from keycloak import KeycloakAdmin
from keycloak.exceptions import (
    KeycloakAuthenticationError,
    KeycloakConnectionError,
    KeycloakError,
    KeycloakGetError,
    raise_error_from_response,
)
from prometheus_client import Counter

from provider.config import KeycloakSettings
from provider.keycloak_connection import ServiceAccount, admin_api
from provider.password_policy import PasswordPolicy

log = logging.getLogger(__name__)

T = TypeVar("T")

# Every admin-API request this process made, by what it was for: the cost a step adds to
# Keycloak, read by /metrics and by `scripts/bench activation`. Not in the global
# registry: /metrics builds a registry per scrape and adds it there.
ADMIN_CALLS = Counter(
    "umpass_keycloak_admin_calls",
    "Keycloak admin-API requests made by this process, by action",
    ["action"],
    registry=None,
)

# User-profile attribute names shared with keycloak_config/user-profile.json.
ACTIVATION_STATE = "activation_state"
ACTIVATED_AT = "activated_at"
PHONE_NUMBER = "phone_number"
PHONE_NUMBER_VERIFIED = "phone_number_verified"
ACCEPTED_POLICIES = "accepted_policies"
# "open" from the activation a sign-in handoff finishes until Keycloak links the identity
# provider (its mapper writes "spent"); the realm's first-broker flow requires "open".
BROKER_TICKET = "umpass_broker_ticket"
TICKET_OPEN = "open"
BROKER_ALIAS = "umpass-activation"  # the identity provider keycloak_config applies

STATE_PENDING = "pending"
STATE_ACTIVE = "active"

# Every enrolled student is a member; the service's credential reaches members only
# (keycloak_config/student_permissions.py).
STUDENTS_GROUP = "umpass-students"

# Keycloak user ids are UUIDs; anything else never reaches a URL path.
_USER_ID = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
# Keycloak's own username limit; longer input cannot name a user and would make the
# query string too long for Keycloak (HTTP 414).
MAX_USERNAME_LENGTH = 255
MAX_EMAIL_LENGTH = 254
# Read-modify-write of a user is serialised in this process by one of a fixed set of locks.
_LOCK_STRIPES = 64
POLICY_CACHE_SECONDS = 60.0

# Top-level fields of a user representation that a PUT must carry back unchanged:
# under the declarative user profile a PUT that leaves them out may clear them.
_USER_FIELDS = (
    "username",
    "email",
    "emailVerified",
    "firstName",
    "lastName",
)
# Not carried back: `enabled` and `requiredActions`. Keycloak leaves a field a PUT omits as
# it is, so a help-desk "disable" (or a required action) written between our read and our
# write survives it; and `enabled: true` would also lift a brute-force lock as a side effect.


class GatewayError(Exception):
    """Base class for everything the gateway raises."""


class IdentityServiceUnavailable(GatewayError):
    """Keycloak cannot be used right now; retrying later is the only remedy."""


class ServiceCredentialRejected(IdentityServiceUnavailable):
    """Keycloak refused the service's own client credential: a configuration fault."""


class UserNotFound(GatewayError):
    """No Keycloak user with that id or username."""


class Conflict(GatewayError):
    """Keycloak refused a value that must be unique (HTTP 409)."""


class InvalidValue(GatewayError):
    """Keycloak's user profile refused a value (HTTP 400 with a field name)."""

    def __init__(self, field_name: str, error_key: str) -> None:
        super().__init__(f"Keycloak refused the value of {field_name or 'a field'}")
        self.field_name = field_name
        self.error_key = error_key


class GatewayRequestRefused(GatewayError):
    """Keycloak refused a request for a reason that is our bug or our configuration."""

    def __init__(self, status: int | None, error_key: str) -> None:
        super().__init__(f"Keycloak refused the request (HTTP {status}, {error_key or 'no key'})")
        self.status = status
        self.error_key = error_key


class PasswordRejected(GatewayError):
    """The realm's password policy refused the password."""

    def __init__(self, reason: str, error_key: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error_key = error_key


@dataclass(frozen=True)
class KeycloakUser:
    id: str
    username: str = field(repr=False)
    enabled: bool
    email: str | None = field(default=None, repr=False)
    email_verified: bool = False
    first_name: str | None = field(default=None, repr=False)
    last_name: str | None = field(default=None, repr=False)
    attributes: Mapping[str, Sequence[str]] = field(default_factory=dict, repr=False)

    def attribute(self, name: str) -> str | None:
        values = self.attributes.get(name) or []
        return values[0] if values else None

    @property
    def activation_state(self) -> str | None:
        return self.attribute(ACTIVATION_STATE)

    @classmethod
    def from_representation(cls, rep: Mapping[str, Any]) -> KeycloakUser:
        return cls(
            id=rep["id"],
            username=rep["username"],
            enabled=bool(rep.get("enabled", False)),
            email=rep.get("email"),
            email_verified=bool(rep.get("emailVerified", False)),
            first_name=rep.get("firstName"),
            last_name=rep.get("lastName"),
            attributes={k: list(v) for k, v in (rep.get("attributes") or {}).items()},
        )


# (fields to set, attributes to set or remove) for one user update.
_Change = tuple[Mapping[str, Any], Mapping[str, Sequence[str] | None]]


def _error_body(exc: KeycloakError) -> dict[str, Any]:
    try:
        body = json.loads(exc.response_body or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class KeycloakGateway:
    """Typed, thread-safe access to the admin API of one realm."""

    def __init__(self, settings: KeycloakSettings) -> None:
        self._settings = settings
        self._pool: queue.LifoQueue[KeycloakAdmin] = queue.LifoQueue()
        self._created = 0
        self._create_lock = threading.Lock()
        self._user_locks = [threading.Lock() for _ in range(_LOCK_STRIPES)]
        self._policy: tuple[float, PasswordPolicy] | None = None

    @property
    def realm(self) -> str:
        return self._settings.realm

    # -- connection pool -------------------------------------------------------------

    def _new_admin(self) -> KeycloakAdmin:
        s = self._settings
        return admin_api(
            s.url,
            ServiceAccount(s.realm, s.client_id, s.client_secret),
            timeout=s.timeout_seconds,
            # No silent resend: a retried PUT or POST could apply twice, and every retry
            # doubles the time a student waits on a sick server. Writes are idempotent
            # and the caller decides when to try again.
            retries=0,
        )

    @contextmanager
    def _lease(self) -> Iterator[KeycloakAdmin]:
        try:
            admin = self._pool.get_nowait()
        except queue.Empty:
            with self._create_lock:
                may_create = self._created < self._settings.pool_size
                if may_create:
                    self._created += 1
            if may_create:
                admin = self._new_admin()
            else:
                try:
                    admin = self._pool.get(timeout=self._settings.timeout_seconds)
                except queue.Empty:
                    raise IdentityServiceUnavailable("all Keycloak connections busy") from None
        try:
            yield admin
        finally:
            self._pool.put(admin)

    def _ensure_token(self, admin: KeycloakAdmin, action: str) -> None:
        """Fetch the service token up front, so its failures are told apart from the call's."""
        connection = admin.connection
        if connection.token is not None:
            return
        try:
            connection.get_token()
        except KeycloakConnectionError as exc:
            log.warning("keycloak unreachable", extra={"action": action})
            raise IdentityServiceUnavailable("Keycloak is unreachable") from exc
        except KeycloakError as exc:
            if exc.response_code is not None and exc.response_code >= 500:
                log.warning(
                    "keycloak server error", extra={"action": action, "status": exc.response_code}
                )
                raise IdentityServiceUnavailable(f"Keycloak answered {exc.response_code}") from exc
            # Wrong secret (401), unknown realm (404), client not allowed (400): all ours.
            log.error(
                "keycloak refused the service credential",
                extra={"action": action, "status": exc.response_code},
            )
            raise ServiceCredentialRejected("Keycloak refused the service credential") from exc

    def _call(
        self, action: str, fn: Callable[[KeycloakAdmin], T], *, about_user: bool = False
    ) -> T:
        """Run one admin call and translate python-keycloak's errors into ours.

        `about_user`: the call names one user, so a 404 means that user is gone.
        """
        with self._lease() as admin:
            self._ensure_token(admin, action)
            ADMIN_CALLS.labels(action).inc()
            try:
                return fn(admin)
            except KeycloakConnectionError as exc:
                log.warning("keycloak unreachable", extra={"action": action})
                raise IdentityServiceUnavailable("Keycloak is unreachable") from exc
            except KeycloakAuthenticationError as exc:
                log.error(
                    "keycloak refused the service credential",
                    extra={"action": action, "status": exc.response_code},
                )
                raise ServiceCredentialRejected("Keycloak refused the service credential") from exc
            except KeycloakError as exc:
                raise self._translate(action, exc, about_user=about_user) from exc

    @staticmethod
    def _translate(action: str, exc: KeycloakError, *, about_user: bool) -> GatewayError:
        status = exc.response_code
        if status is not None and status >= 500:
            log.warning("keycloak server error", extra={"action": action, "status": status})
            return IdentityServiceUnavailable(f"Keycloak answered {status}")
        if status == 404 and about_user:
            return UserNotFound(action)
        if status == 409:
            return Conflict(action)
        body = _error_body(exc)
        key = str(body.get("error") or body.get("errorMessage") or "")
        text = " ".join(str(v) for v in body.values()).lower()
        if status == 400 and "storage provider" in text and "unavailable" in text:
            # A federated directory (LDAP) that is down: Keycloak says 400, but for the
            # student it is an outage ("try again later"), not a refusal.
            log.warning("user directory unavailable", extra={"action": action})
            return IdentityServiceUnavailable("the user directory behind Keycloak is down")
        log.warning(
            "keycloak refused a request",
            extra={"action": action, "status": status, "error_key": key},
        )
        if status == 400 and body.get("field"):
            return InvalidValue(str(body["field"]), key)
        return GatewayRequestRefused(status, key)

    @contextmanager
    def _user_lock(self, user_id: str) -> Iterator[None]:
        with self._user_locks[zlib.crc32(user_id.encode()) % _LOCK_STRIPES]:
            yield

    @staticmethod
    def _checked_id(user_id: str) -> str:
        if not _USER_ID.match(user_id or ""):
            raise UserNotFound("malformed user id")
        return user_id

    # -- reads -----------------------------------------------------------------------

    def ping(self) -> None:
        """Raise `IdentityServiceUnavailable` unless the admin API answers us."""
        self._call("ping", lambda a: a.users_count())

    def issuer(self) -> str:
        """The realm's issuer as Keycloak names it (from its `--hostname`), for the start-up
        check that browsers and the service mean the same Keycloak."""
        url = f"{self._settings.url}/realms/{self._settings.realm}/.well-known/openid-configuration"
        try:
            response = requests.get(url, timeout=self._settings.timeout_seconds)
            response.raise_for_status()
            return str(response.json()["issuer"])
        except (requests.RequestException, ValueError, KeyError) as exc:
            raise IdentityServiceUnavailable(f"no OpenID discovery at {url}") from exc

    def find_user(self, username: str) -> KeycloakUser | None:
        """The user with exactly this username (Keycloak lower-cases usernames)."""
        wanted = username.strip().lower()
        if not wanted or len(wanted) > MAX_USERNAME_LENGTH:
            return None
        reps = self._call(
            "find_user",
            lambda a: a.get_users(
                {"username": wanted, "exact": True, "briefRepresentation": False}
            ),
        )
        for rep in reps:
            if rep.get("username", "").lower() == wanted:
                return KeycloakUser.from_representation(rep)
        return None

    def find_user_by_email(self, email: str) -> KeycloakUser | None:
        """The one user whose email is exactly this (None when none, or several)."""
        wanted = email.strip().lower()
        if not wanted or len(wanted) > MAX_EMAIL_LENGTH:
            return None
        reps = self._call(
            "find_user",
            lambda a: a.get_users({"email": wanted, "exact": True, "briefRepresentation": False}),
        )
        found = [r for r in reps if (r.get("email") or "").lower() == wanted]
        return KeycloakUser.from_representation(found[0]) if len(found) == 1 else None

    def get_user(self, user_id: str) -> KeycloakUser:
        user_id = self._checked_id(user_id)
        rep = self._call("get_user", lambda a: a.get_user(user_id), about_user=True)
        return KeycloakUser.from_representation(rep)

    def password_policy(self) -> PasswordPolicy:
        """The realm's password policy (needs `view-realm`), cached for a minute."""
        cached = self._policy
        if cached is not None and time.monotonic() - cached[0] < POLICY_CACHE_SECONDS:
            return cached[1]
        realm = self._call("password_policy", lambda a: a.get_realm(self.realm))
        policy = PasswordPolicy.parse(realm.get("passwordPolicy"))
        self._policy = (time.monotonic(), policy)
        return policy

    def password_stamp(self, user_id: str) -> int | None:
        """When Keycloak last set the user's password (its own clock, in ms), or None when
        the user has none. Keycloak restamps the password credential on every set, so
        two reads that differ tell that a password was set in between."""
        user_id = self._checked_id(user_id)
        credentials = self._call(
            "credentials", lambda a: a.get_credentials(user_id), about_user=True
        )
        stamps = [
            int(c.get("createdDate") or 0) for c in credentials if c.get("type") == "password"
        ]
        return max(stamps) if stamps else None

    def lockout_status(self, user_id: str) -> dict[str, Any]:
        """Keycloak's brute-force record for the user (`disabled`, `numFailures`, ...)."""
        path = self._lockout_path(user_id)
        return self._call(
            "lockout_status", lambda a: self._raw_json(a, "GET", path), about_user=True
        )

    # -- writes ----------------------------------------------------------------------

    def create_user(
        self,
        username: str,
        *,
        email: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        attributes: Mapping[str, Sequence[str]] | None = None,
    ) -> str:
        """Create an enabled user with no password and return its id.

        Idempotent for the same person: if the username exists with the same email (a
        create that arrived twice, or a re-run), its id is returned; a different person
        with that username is a `Conflict`.
        """
        rep: dict[str, Any] = {
            "username": username,
            "enabled": True,
            "attributes": {k: list(v) for k, v in (attributes or {}).items()},
            "groups": [f"/{STUDENTS_GROUP}"],
        }
        if email:
            rep["email"] = email
        if first_name:
            rep["firstName"] = first_name
        if last_name:
            rep["lastName"] = last_name
        try:
            return self._call("create_user", lambda a: a.create_user(rep, exist_ok=False))
        except Conflict:
            existing = self.find_user(username)
            if existing is None or (existing.email or None) != (email.lower() if email else None):
                raise
            return existing.id

    def set_email(self, user_id: str, email: str, *, verified: bool = True) -> None:
        self._update(user_id, lambda _current: ({"email": email, "emailVerified": verified}, {}))

    def set_phone(self, user_id: str, phone_e164: str, *, verified: bool = True) -> None:
        changes = {
            PHONE_NUMBER: [phone_e164],
            PHONE_NUMBER_VERIFIED: ["true" if verified else "false"],
        }
        self._update(user_id, lambda _current: ({}, changes))

    def set_password(self, user_id: str, password: str) -> None:
        """Set a permanent (never temporary) password.

        A policy refusal becomes `PasswordRejected` with a plain sentence.
        """
        user_id = self._checked_id(user_id)
        with self._password_refusals():
            self._call(
                "set_password",
                lambda a: a.set_user_password(user_id, password, temporary=False),
                about_user=True,
            )

    def activate(
        self,
        user_id: str,
        password: str,
        *,
        attributes: Mapping[str, Sequence[str]],
        activated_at: datetime | None = None,
        for_sign_in: bool = False,
    ) -> bool:
        """Set the first password and mark the account active, in ONE Keycloak write.

        Keycloak applies a user PUT carrying `credentials` in one transaction and checks
        the password policy before anything changes, so the account is either still
        pending without a password or active with it: never a usable password on a
        pending account, never active without a password. Returns False, writing
        nothing, when the account is already active (a repeated or parallel submit).

        `for_sign_in`: a sign-in waits for this activation, so the same write opens the
        account's handoff ticket. Otherwise the write closes any ticket an earlier
        activation left open. Either way any earlier link to the activation provider is
        removed before the write: an account set back to pending (e.g. handed to the wrong
        person) keeps no link that a replayed assertion could sign in through.
        """
        when = (activated_at or datetime.now(UTC)).astimezone(UTC)
        stamp = when.isoformat(timespec="seconds").replace("+00:00", "Z")
        credential = {"type": "password", "value": password, "temporary": False}
        wrote: list[bool] = []
        ticket = {BROKER_TICKET: [TICKET_OPEN] if for_sign_in else None}

        def to_active(current: Mapping[str, Any]) -> _Change | None:
            if (current.get("attributes") or {}).get(ACTIVATION_STATE) == [STATE_ACTIVE]:
                return None
            # The read lists the account's links (a realm with an identity provider): the
            # DELETE only when there is one to drop, always when the read cannot tell.
            links = current.get("federatedIdentities")
            if links is None or any(x.get("identityProvider") == BROKER_ALIAS for x in links):
                self._unlink_activation_provider(user_id)
            wrote.append(True)
            # The password is chosen here: drop only a pending "update password"; any
            # other action an admin set (e.g. configure OTP) stays.
            actions = [a for a in current.get("requiredActions") or [] if a != "UPDATE_PASSWORD"]
            return (
                {"credentials": [credential], "requiredActions": actions},
                {**attributes, **ticket, ACTIVATION_STATE: [STATE_ACTIVE], ACTIVATED_AT: [stamp]},
            )

        with self._password_refusals():
            self._update(user_id, to_active)
        return bool(wrote)

    def accept_policies(self, user_id: str, records: Sequence[str]) -> str | None:
        """Add to an active student's `accepted_policies` each ``id@version:time`` of
        `records` whose version it does not hold yet; the versions accepted before stay
        (the account keeps its history). One read, and one write only when something is
        new, so a repeated answer writes nothing. Returns the account's username, or None
        when it is no longer an active, enabled student (nothing written)."""
        username: list[str] = []

        def add(current: Mapping[str, Any]) -> _Change | None:
            attributes = current.get("attributes") or {}
            if attributes.get(ACTIVATION_STATE) != [STATE_ACTIVE] or not current.get("enabled"):
                return None
            username.append(str(current["username"]))
            held = list(attributes.get(ACCEPTED_POLICIES) or [])
            keys = {record.split(":", 1)[0] for record in held}
            new = [record for record in records if record.split(":", 1)[0] not in keys]
            return ({}, {ACCEPTED_POLICIES: [*held, *new]}) if new else None

        self._update(user_id, add)
        return username[0] if username else None

    @contextmanager
    def _password_refusals(self) -> Iterator[None]:
        """Turn Keycloak's password-policy refusal into `PasswordRejected`."""
        try:
            yield
        except GatewayRequestRefused as exc:
            if exc.status != 400 or not exc.error_key.startswith("invalidPassword"):
                raise
            cause = exc.__cause__
            description = ""
            if isinstance(cause, KeycloakError):
                description = str(_error_body(cause).get("error_description") or "")
            try:
                policy = self.password_policy()
            except GatewayError:
                policy = PasswordPolicy()  # the refusal still reaches the student
            raise PasswordRejected(
                policy.explain_refusal(exc.error_key, description), exc.error_key
            ) from None

    def set_back_to_pending(self, user_id: str) -> None:
        """The help desk's "back to pending" (e.g. an account handed to the wrong person).

        The state first (the contacts unproven with it), so that any sign-in from here on
        meets the flows' pending check; then every session ends, so that no refresh token,
        offline token or token exchange obtained while the account was active yields a new
        token: Keycloak does not read the account's attributes on those grants, only
        whether the session lives.
        Its admin logout leaves offline sessions alive (26.7), so each client's offline
        tokens (and consent) are revoked too.
        """

        def to_pending(current: Mapping[str, Any]) -> _Change | None:
            # The contacts stay, unproven: whoever held the account may have proven their
            # own, and a proven contact opens recovery; the next activation proves again.
            return {"emailVerified": False}, {
                ACTIVATION_STATE: [STATE_PENDING],
                ACTIVATED_AT: None,
                PHONE_NUMBER_VERIFIED: ["false"],
            }

        self._update(user_id, to_pending)
        self.sign_out_everywhere(user_id)
        consents = self._call("consents", lambda a: a.user_consents(user_id), about_user=True)
        for consent in consents:
            client = str(consent["clientId"])
            self._call("revoke", lambda a, c=client: a.revoke_consent(user_id, c), about_user=True)

    def sign_out_everywhere(self, user_id: str) -> None:
        """End every Keycloak session of the user (idempotent: none left is fine)."""
        user_id = self._checked_id(user_id)
        self._call("logout", lambda a: a.user_logout(user_id), about_user=True)

    def clear_lockout(self, user_id: str) -> None:
        """Lift Keycloak's brute-force lock on the user (a no-op when none)."""
        path = self._lockout_path(user_id)
        self._call("clear_lockout", lambda a: self._raw_json(a, "DELETE", path), about_user=True)

    def _unlink_activation_provider(self, user_id: str) -> None:
        """Idempotent: no link (404) is the usual answer."""
        path = (
            f"admin/realms/{self.realm}/users/{self._checked_id(user_id)}"
            f"/federated-identity/{BROKER_ALIAS}"
        )
        try:
            self._call("unlink", lambda a: self._raw_json(a, "DELETE", path), about_user=True)
        except UserNotFound:
            return

    # -- helpers ---------------------------------------------------------------------

    def _lockout_path(self, user_id: str) -> str:
        user_id = self._checked_id(user_id)
        return f"admin/realms/{self.realm}/attack-detection/brute-force/users/{user_id}"

    def _update(self, user_id: str, change: Callable[[Mapping[str, Any]], _Change | None]) -> None:
        """Read the user, let `change` decide (fields, attributes), write the whole back.

        `change` sees the current representation under the user's lock and may return
        None for "nothing to do".
        """
        user_id = self._checked_id(user_id)
        with self._user_lock(user_id):
            current = self._call("get_user", lambda a: a.get_user(user_id), about_user=True)
            decided = change(current)
            if decided is None:
                return
            fields, attributes = decided
            merged = {k: list(v) for k, v in (current.get("attributes") or {}).items()}
            for name, values in attributes.items():
                if values is None:
                    merged.pop(name, None)
                else:
                    merged[name] = list(values)
            rep = {k: current[k] for k in _USER_FIELDS if k in current}
            rep.update(fields)
            rep["attributes"] = merged
            self._call("update_user", lambda a: a.update_user(user_id, rep), about_user=True)

    @staticmethod
    def _raw_json(admin: KeycloakAdmin, method: str, path: str) -> dict[str, Any]:
        """A plain admin call python-keycloak has no typed method for."""
        conn = admin.connection
        response = conn.raw_get(path) if method == "GET" else conn.raw_delete(path)
        body = raise_error_from_response(response, KeycloakGetError)
        return body if isinstance(body, dict) else {}
