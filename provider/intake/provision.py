"""Importing a validated intake: pending Keycloak accounts in bulk, proofing hashes, codes.

Keycloak first, then the database, both idempotent, so a crash or an outage anywhere
leaves an intake that the same command completes when run again:

1. The accounts that are already active are read once (one paged query) and left out:
   an active student is never touched.
2. The others go to Keycloak's partial import in batches, with `ifResourceExists: SKIP`:
   new accounts are created pending with no password; existing ones are left exactly as
   they are. The provisioning credential (`umpass-provisioner`, which alone holds
   `manage-realm`) does this, never the running service's.
3. Proofing hashes are stored for every student of the intake who has none yet.

Codes are a separate step (`issue_intake_codes`): shown once, stored as HMACs.
"""

from __future__ import annotations

import json
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from keycloak import KeycloakAdmin
from keycloak.exceptions import KeycloakConnectionError, KeycloakError
from sqlalchemy import insert, select, update

from provider import audit
from provider.activation_codes import DEFAULT_CODE_TTL, IssuedCode
from provider.config import KeycloakSettings
from provider.intake.records import IntakeInvalid, IntakeRecord, Problem
from provider.keycloak import (
    ACTIVATION_STATE,
    PHONE_NUMBER,
    STATE_ACTIVE,
    STATE_PENDING,
    STUDENTS_GROUP,
)
from provider.keycloak_connection import ServiceAccount, admin_api
from provider.keyed_hash import Purpose
from provider.proofing import new_activation_code, normalize_date_of_birth, normalize_id_last4
from provider.services import Services
from provider.storage.models import ActivationCode, AuditEvent, Student

BATCH_SIZE = 500
# Batches Keycloak imports at once: on two cores, two keep Keycloak busy while the
# database work on finished batches runs beside them.
PARALLEL_BATCHES = int(os.environ.get("UMPASS_IMPORT_PARALLEL", "2"))
PROGRAMME = "programme"
Progress = Callable[[int], None]  # called with how many records a step just finished


class ProvisioningError(Exception):
    """Keycloak refused or could not be reached; what was done so far is kept, and running
    the same import again completes it."""


@dataclass
class ImportReport:
    intake: str
    created: list[str] = field(default_factory=list)
    existing_pending: list[str] = field(default_factory=list)
    already_active: list[str] = field(default_factory=list)
    enrolled: int = 0  # proofing hashes stored by this run
    joined_group: int = 0  # pending accounts that joined the students group


@dataclass(frozen=True)
class RealmAccounts:
    email_of: dict[str, str]  # username -> email (lower case), every account
    pending: set[str]
    active: set[str]

    def problems(self, records: Sequence[IntakeRecord]) -> list[Problem]:
        """Rows that would touch an account that is not theirs; checked before any write.

        Keycloak's partial import skips a user whose username *or email* exists, so
        without this a Registry row could be attached to a staff account, to another
        student's account, or to nothing at all."""
        owner = {email: user for user, email in self.email_of.items() if email}
        found = []
        for r in records:
            existing = self.email_of.get(r.user_id)
            if existing is not None:
                if r.user_id in self.active:
                    continue  # left as it is, reported as already active
                if r.user_id not in self.pending:
                    found.append(
                        Problem(
                            r.where,
                            f"{r.user_id} is an account that is not a pending student: "
                            "nothing of it is changed",
                        )
                    )
                elif existing != r.email.lower():
                    found.append(
                        Problem(
                            r.where,
                            f"{r.user_id} is already in Keycloak with another email: "
                            "correct the row or the account",
                        )
                    )
            elif owner.get(r.email.lower(), r.user_id) != r.user_id:
                found.append(
                    Problem(
                        r.where,
                        f"the email of {r.user_id} belongs to another account "
                        f"({owner[r.email.lower()]})",
                    )
                )
        return found


class Provisioner:
    """The bulk path into Keycloak, through the separate provisioning credential."""

    def __init__(self, settings: KeycloakSettings, client_id: str, client_secret: str) -> None:
        self.realm = settings.realm
        self._settings = settings
        self._account = ServiceAccount(settings.realm, client_id, client_secret)
        self._local = threading.local()  # python-keycloak is not thread-safe: one per thread

    @property
    def admin(self) -> KeycloakAdmin:
        admin = getattr(self._local, "admin", None)
        if admin is None:
            admin = self._local.admin = admin_api(
                self._settings.url,
                self._account,
                timeout=max(self._settings.timeout_seconds, 120),  # a batch takes seconds
            )
        return admin

    def active_usernames(self) -> set[str]:
        return {u["username"] for u in self._all_users(q=f"{ACTIVATION_STATE}:{STATE_ACTIVE}")}

    def pending_users(self) -> list[dict[str, Any]]:
        return self._all_users(q=f"{ACTIVATION_STATE}:{STATE_PENDING}")

    def accounts(self) -> RealmAccounts:
        """Who is in the realm already: usernames with their email, and who is pending
        or active (three paged reads, brief representations)."""
        every = self._all_users()
        return RealmAccounts(
            email_of={u["username"]: (u.get("email") or "").lower() for u in every},
            pending={u["username"] for u in self.pending_users()},
            active=self.active_usernames(),
        )

    def join_pending_students(self) -> int:
        """Pending accounts outside the students group (made before it existed, or by other
        means) join it: the service's credential reaches group members only."""
        group = f"/{STUDENTS_GROUP}"
        found = self._get(f"admin/realms/{self.realm}/group-by-path{group}")
        members = {u["id"] for u in self._all_users(path=f"groups/{found['id']}/members")}
        joined = 0
        for user in self.pending_users():
            if user["id"] in members:
                continue
            response = self.admin.connection.raw_put(
                f"admin/realms/{self.realm}/users/{user['id']}/groups/{found['id']}", data="{}"
            )
            if response.status_code >= 300:
                raise ProvisioningError(
                    f"Keycloak refused to add a pending account to {STUDENTS_GROUP} "
                    f"(HTTP {response.status_code})"
                )
            joined += 1
        return joined

    def _all_users(self, path: str = "users", **query: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while True:
            page = self._get(
                f"admin/realms/{self.realm}/{path}",
                briefRepresentation="true",
                first=str(len(found)),
                max="1000",
                **query,
            )
            found.extend(page)
            if len(page) < 1000:
                return found

    def import_users(self, users: Sequence[dict[str, Any]]) -> dict[str, str]:
        """username -> ADDED or SKIPPED, for one batch."""
        body = {"ifResourceExists": "SKIP", "users": list(users)}
        try:
            response = self.admin.connection.raw_post(
                f"admin/realms/{self.realm}/partialImport", data=json.dumps(body)
            )
        except KeycloakConnectionError as exc:
            raise ProvisioningError("cannot reach Keycloak for the partial import") from exc
        if response.status_code >= 300:
            raise ProvisioningError(
                f"Keycloak refused the partial import (HTTP {response.status_code}): "
                f"{response.text[:200]}"
            )
        return {
            r["resourceName"]: r["action"]
            for r in response.json().get("results", [])
            if r.get("resourceType") == "USER"
        }

    def _get(self, path: str, **params: str) -> Any:
        try:
            response = self.admin.connection.raw_get(path, **params)
        except (KeycloakConnectionError, KeycloakError) as exc:
            raise ProvisioningError(
                "cannot reach Keycloak with the provisioning credential"
            ) from exc
        if response.status_code >= 300:
            raise ProvisioningError(
                f"Keycloak refused the provisioning credential (HTTP {response.status_code})"
            )
        return response.json()


def user_representation(record: IntakeRecord) -> dict[str, Any]:
    attributes = {ACTIVATION_STATE: [STATE_PENDING], PHONE_NUMBER: [record.phone]}
    return {
        "username": record.user_id,
        "enabled": True,
        "email": record.email,
        "emailVerified": False,
        "firstName": record.first_name,
        "lastName": record.last_name,
        "attributes": attributes,
        "groups": [f"/{STUDENTS_GROUP}"],
    }


def import_intake(
    svc: Services,
    provisioner: Provisioner,
    records: Sequence[IntakeRecord],
    intake: str,
    *,
    progress: Progress | None = None,
    batch_size: int = BATCH_SIZE,
    after_batch: Callable[[Sequence[IntakeRecord]], None] | None = None,
) -> ImportReport:
    """`after_batch` runs once a batch's accounts exist and its proofing data is stored
    (e.g. to issue its codes). The database work on one batch overlaps Keycloak's import
    of the next (one worker thread talks to Keycloak), so the import takes about as long
    as Keycloak's own partial import."""
    report = ImportReport(intake=intake)
    accounts = provisioner.accounts()
    conflicts = accounts.problems(records)
    if conflicts:
        raise IntakeInvalid(conflicts)
    active = accounts.active
    todo = [r for r in records if r.user_id not in active]
    report.already_active = sorted(r.user_id for r in records if r.user_id in active)

    def finish(batch: Sequence[IntakeRecord], results: dict[str, str]) -> None:
        for record in batch:
            if results.get(record.user_id) == "ADDED":
                report.created.append(record.user_id)
            else:
                report.existing_pending.append(record.user_id)
        report.enrolled += _enrol_missing(svc, batch, intake)
        if after_batch:
            after_batch(batch)
        if progress:
            progress(len(batch))

    in_flight: deque[tuple[Sequence[IntakeRecord], Future[dict[str, str]]]] = deque()
    with ThreadPoolExecutor(max_workers=PARALLEL_BATCHES, thread_name_prefix="import") as pool:
        for batch in _batches(todo, batch_size):
            if len(in_flight) == PARALLEL_BATCHES:
                done, running = in_flight.popleft()
                finish(done, running.result())
            reps = [user_representation(r) for r in batch]
            in_flight.append((batch, pool.submit(provisioner.import_users, reps)))
        while in_flight:
            done, running = in_flight.popleft()
            finish(done, running.result())
    report.joined_group = provisioner.join_pending_students()
    with svc.sessions.begin() as session:
        audit.record(
            session,
            audit.SYSTEM,
            "intake.imported",
            None,
            intake=intake,
            created=len(report.created),
            enrolled=report.enrolled,
            already_active=len(report.already_active),
        )
    return report


def _enrol_missing(svc: Services, records: Sequence[IntakeRecord], intake: str) -> int:
    """Proofing hashes for the students that have none; existing rows are left alone."""
    added = 0
    now = datetime.now(UTC)
    with svc.sessions.begin() as session:
        for batch in _batches(records, 900):  # under SQLite's bound-parameter limit
            ids = [r.user_id for r in batch]
            known = set(session.scalars(select(Student.user_id).where(Student.user_id.in_(ids))))
            rows = [
                {
                    "user_id": record.user_id,
                    "dob_hash": svc.hasher.digest(
                        Purpose.DATE_OF_BIRTH, normalize_date_of_birth(record.date_of_birth)
                    ),
                    "id_last4_hash": svc.hasher.digest(
                        Purpose.ID_LAST4, normalize_id_last4(record.id_number) or ""
                    ),
                    "intake": intake,
                    "language": record.language,
                    "created_at": now,
                }
                for record in batch
                if record.user_id not in known
            ]
            if rows:
                session.execute(insert(Student), rows)  # one statement, many rows
            added += len(rows)
    return added


def issue_intake_codes(
    svc: Services,
    user_ids: Iterable[str],
    *,
    ttl: timedelta = DEFAULT_CODE_TTL,
    reissue: bool = False,
    actor: str = audit.SYSTEM,
    progress: Progress | None = None,
) -> list[IssuedCode]:
    """A code for each enrolled student who has no usable one (every one with `reissue`,
    which revokes the previous codes); never for a student who has used a code.

    The same rows and audit events as `activation_codes.issue_code`, written a batch
    at a time (one statement per kind of row), since an intake is thousands."""
    now = datetime.now(UTC)
    issued: list[IssuedCode] = []
    with svc.sessions.begin() as session:
        for batch in _batches(list(user_ids), 900):
            # Locked (in one order): a help-desk re-issue for one of these students
            # waits for the batch instead of colliding with it on PostgreSQL.
            enrolled = set(
                session.scalars(
                    select(Student.user_id)
                    .where(Student.user_id.in_(batch))
                    .order_by(Student.user_id)
                    .with_for_update()
                )
            )
            # One read of the batch's codes; what each student holds follows from it.
            usable: set[str] = set()  # neither used nor revoked (expired or not)
            live: set[str] = set()  # usable and not expired
            used: set[str] = set()
            for user_id, used_at, revoked_at, expires_at in session.execute(
                select(
                    ActivationCode.user_id,
                    ActivationCode.used_at,
                    ActivationCode.revoked_at,
                    ActivationCode.expires_at,
                ).where(ActivationCode.user_id.in_(batch))
            ):
                if used_at is not None:
                    used.add(user_id)
                elif revoked_at is None:
                    usable.add(user_id)
                    if expires_at > now:
                        live.add(user_id)
            chosen = [
                u for u in batch if u in enrolled and u not in used and (reissue or u not in live)
            ]
            to_revoke = [u for u in chosen if u in usable]
            if to_revoke:
                session.execute(
                    update(ActivationCode)
                    .where(
                        ActivationCode.user_id.in_(to_revoke),
                        ActivationCode.used_at.is_(None),
                        ActivationCode.revoked_at.is_(None),
                    )
                    .values(revoked_at=now)
                )
            expires = now + ttl
            codes = {u: new_activation_code() for u in chosen}
            if chosen:
                session.execute(
                    insert(ActivationCode),
                    [
                        {
                            "user_id": u,
                            "code_hash": svc.hasher.digest(
                                Purpose.ACTIVATION_CODE, codes[u].replace("-", "")
                            ),
                            "issued_at": now,
                            "expires_at": expires,
                        }
                        for u in chosen
                    ],
                )
                events = [
                    {
                        "at": now,
                        "actor": actor,
                        "action": "code.revoked",
                        "subject": u,
                        "detail": {"count": 1},
                    }
                    for u in to_revoke
                ] + [
                    {
                        "at": now,
                        "actor": actor,
                        "action": "code.issued",
                        "subject": u,
                        "detail": {"expires_at": expires.isoformat()},
                    }
                    for u in chosen
                ]
                session.execute(insert(AuditEvent), events)
            issued += [IssuedCode(user_id=u, code=codes[u], expires_at=expires) for u in chosen]
            if progress:
                progress(len(batch))
    return issued


def _batches(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
