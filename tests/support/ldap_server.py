"""A real OpenLDAP for the tests: one slapd per session (scripts/devstack/slapd.py) and a
helper that seeds students into it with ldap3.

slapd missing is a failure, never a skip: `scripts/test` installs it.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import pytest
from devstack import slapd
from ldap3 import Connection, Server
from ldap3.core.exceptions import LDAPEntryAlreadyExistsResult

from provider.intake.ldap_source import DEFAULT_ATTRIBUTES
from tests.support.inbox import new_mobile


@pytest.fixture(scope="session")
def slapd_server() -> Iterator[slapd.SlapdServer]:
    server = slapd.start(admin_password=secrets.token_urlsafe(16))
    try:
        yield server
    finally:
        slapd.stop(server)


@dataclass(frozen=True)
class SeededStudents:
    base_dn: str  # the organizational unit they were put in
    dns: list[str]


def admin_connection(server: slapd.SlapdServer) -> Connection:
    return Connection(
        Server(server.url, connect_timeout=5),
        server.admin_dn,
        server.admin_password,
        receive_timeout=10,
        auto_bind=True,
        raise_exceptions=True,
    )


def student(user_id: str | None = None, *, index: int = 0, **values: str) -> dict[str, str]:
    """One valid student in the project's field names; `values` override."""
    user_id = user_id or f"l{secrets.token_hex(1)}{index:04d}"
    return {
        "user_id": user_id,
        "first_name": "Mei",
        "last_name": f"Chan{index}",
        "email": f"{user_id}@example.edu",
        "phone": new_mobile(),
        "date_of_birth": "20070314",
        "id_number": "1234567(8)",
        "programme": "BSc Computing",
        "language": "zh-Hant",
        **values,
    }


def seed_students(
    server: slapd.SlapdServer,
    students: int | Sequence[Mapping[str, str]],
    *,
    ou: str | None = None,
) -> SeededStudents:
    """Add an organizational unit (default: a fresh `students-<hex>`, so tests sharing the
    session's server never see each other's entries) and one inetOrgPerson per student.

    `students` is a count of generated students or records in the project's field names
    (tests.support.ldap_server.student), stored under the intake's default attributes;
    an extra `password` key becomes `userPassword`.
    """
    if isinstance(students, int):
        batch = secrets.token_hex(1)
        records = [student(f"l{batch}{i:04d}", index=i) for i in range(students)]
    else:
        records = list(students)
    ou = ou or f"students-{secrets.token_hex(3)}"
    base = f"ou={ou},{server.base_dn}"
    conn = admin_connection(server)
    try:
        with contextlib.suppress(LDAPEntryAlreadyExistsResult):
            conn.add(base, ["organizationalUnit"], {"ou": ou})
        dns = []
        for record in records:
            attrs = {
                DEFAULT_ATTRIBUTES[name]: value
                for name, value in record.items()
                if name in DEFAULT_ATTRIBUTES and value
            }
            # `person` needs sn and cn, even when a test leaves the names out.
            attrs.setdefault("sn", "-")
            full_name = f"{record.get('first_name', '')} {record.get('last_name', '')}".strip()
            attrs["cn"] = full_name or record["user_id"]
            if record.get("password"):
                attrs["userPassword"] = record["password"]
            dn = f"uid={record['user_id']},{base}"
            conn.add(dn, ["inetOrgPerson", "organizationalPerson", "person", "top"], attrs)
            dns.append(dn)
        return SeededStudents(base, dns)
    finally:
        conn.unbind()
