"""Importing a validated intake: pending Keycloak accounts in bulk, proofing hashes, codes.

Keycloak first, then the database, both idempotent, so a crash or an outage anywhere
leaves an intake that the same command completes when run again:

1. The realm is read once, a page at a time (realm_check.py): rows that would touch an
   account that is not theirs stop the import before any write, and the accounts that
   are already active are left out: an active student is never touched.
2. The others go to Keycloak's partial import in batches, with `ifResourceExists: SKIP`:
   new accounts are created pending with no password; existing ones are left exactly as
   they are. The provisioning credential (`umpass-provisioner`, which alone holds
   `manage-realm`) does this, never the running service's.
3. Proofing hashes are stored for every student of the intake who has none yet.

The records come from the checked intake (checked.py) chunk by chunk and leave batch by
batch, so memory stays flat however large the intake.

Codes are a separate step (`issue_intake_codes`): shown once, stored as HMACs.
"""

from __future__ import annotations

import json
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any, TypeVar

from keycloak import KeycloakAdmin
from keycloak.exceptions import KeycloakConnectionError, KeycloakError
from sqlalchemy import insert, select, update

from provider import audit
from provider.activation_codes import DEFAULT_CODE_TTL, IssuedCode
from provider.config import KeycloakSettings
from provider.intake.checked import CheckedIntake, IntakeIndex
from provider.intake.keys import key
from provider.intake.realm_check import RealmView, read_realm
from provider.intake.records import IntakeInvalid, IntakeRecord
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
PAGE_SIZE = 1000  # users per read of a listing
PROGRAMME = "programme"
# username -> (ADDED or SKIPPED, the account id Keycloak answered with)
ImportResults = dict[str, tuple[str, str | None]]
T = TypeVar("T")
Progress = Callable[[int], None]  # called with how many records a step just finished


class ProvisioningError(Exception):
    """Keycloak refused or could not be reached; what was done so far is kept, and running
    the same import again completes it."""


@dataclass
class ImportReport:
    """How many students of the intake went which way (counts, not names: an intake is
    tens of thousands)."""

    intake: str
    created: int = 0
    existing_pending: int = 0
    already_active: int = 0
    enrolled: int = 0  # proofing hashes stored by this run
    joined_group: int = 0  # pending accounts that joined the students group


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

    def pending_users(self) -> list[dict[str, Any]]:
        return list(self.users(q=f"{ACTIVATION_STATE}:{STATE_PENDING}"))

    def realm_view(self, intake: IntakeIndex) -> RealmView:
        """What the realm holds that concerns `intake` (four paged reads, brief
        representations, each page dropped once looked at)."""
        group = self._get(f"admin/realms/{self.realm}/group-by-path/{STUDENTS_GROUP}")
        return read_realm(
            intake,
            members=self.users(path=f"groups/{group['id']}/members"),
            active=self.users(q=f"{ACTIVATION_STATE}:{STATE_ACTIVE}"),
            pending=self.users(q=f"{ACTIVATION_STATE}:{STATE_PENDING}"),
            everyone=self.users(),
        )

    def join_students(self, account_ids: Iterable[str]) -> int:
        """These pending accounts (made before the students group existed, or by other
        means) join it: the service's credential reaches group members only."""
        account_ids = list(account_ids)
        if not account_ids:
            return 0
        group = self._get(f"admin/realms/{self.realm}/group-by-path/{STUDENTS_GROUP}")
        for account_id in account_ids:
            response = self.admin.connection.raw_put(
                f"admin/realms/{self.realm}/users/{account_id}/groups/{group['id']}", data="{}"
            )
            if response.status_code >= 300:
                raise ProvisioningError(
                    f"Keycloak refused to add a pending account to {STUDENTS_GROUP} "
                    f"(HTTP {response.status_code})"
                )
        return len(account_ids)

    def users(self, path: str = "users", **query: str) -> Iterator[dict[str, Any]]:
        """Every user of a listing, read a page at a time as the caller goes."""
        first = 0
        while True:
            page = self._get(
                f"admin/realms/{self.realm}/{path}",
                briefRepresentation="true",
                first=str(first),
                max=str(PAGE_SIZE),
                **query,
            )
            yield from page
            if len(page) < PAGE_SIZE:
                return
            first += len(page)

    def import_users(self, users: Sequence[dict[str, Any]]) -> ImportResults:
        """username -> (ADDED or SKIPPED, the account's id), for one batch."""
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
            r["resourceName"]: (r["action"], r.get("id"))
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
    checked: CheckedIntake,
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
    realm = provisioner.realm_view(checked.index)
    conflicts = realm.problems(checked.records())
    if conflicts:
        raise IntakeInvalid(conflicts)
    report = ImportReport(intake=intake)

    def todo() -> Iterator[IntakeRecord]:
        for record in checked.records():
            if key(record.user_id) in realm.active:
                report.already_active += 1
                if progress:
                    progress(1)
            else:
                yield record

    def finish(batch: Sequence[IntakeRecord], results: ImportResults) -> None:
        added = sum(1 for r in batch if results.get(r.user_id, ("", None))[0] == "ADDED")
        report.created += added
        report.existing_pending += len(batch) - added
        accounts = {name: account for name, (_action, account) in results.items() if account}
        report.enrolled += _enrol_missing(svc, batch, intake, accounts)
        if after_batch:
            after_batch(batch)
        if progress:
            progress(len(batch))

    in_flight: deque[tuple[Sequence[IntakeRecord], Future[ImportResults]]] = deque()
    with ThreadPoolExecutor(max_workers=PARALLEL_BATCHES, thread_name_prefix="import") as pool:
        for batch in _chunked(todo(), batch_size):
            reps = [user_representation(r) for r in batch]
            in_flight.append((batch, pool.submit(provisioner.import_users, reps)))
            # One batch queued beyond the workers: while this thread does the database
            # work of the oldest, Keycloak still has PARALLEL_BATCHES to import.
            if len(in_flight) > PARALLEL_BATCHES:
                done, running = in_flight.popleft()
                finish(done, running.result())
        while in_flight:
            done, running = in_flight.popleft()
            finish(done, running.result())
    report.joined_group = provisioner.join_students(realm.outside_group)
    with svc.sessions.begin() as session:
        audit.record(
            session,
            audit.SYSTEM,
            "intake.imported",
            None,
            intake=intake,
            created=report.created,
            enrolled=report.enrolled,
            already_active=report.already_active,
        )
    return report


def _enrol_missing(
    svc: Services, records: Sequence[IntakeRecord], intake: str, accounts: Mapping[str, str]
) -> int:
    """Proofing hashes for the students that have none, with their Keycloak id (from the
    partial import's answer: identify then reads the account by id, never searches);
    existing rows are left alone."""
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
                    "keycloak_id": accounts.get(record.user_id),
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


def _chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of `size` (the last may be shorter), taken from `items` only as needed."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk
