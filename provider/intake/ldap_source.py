"""Read one intake from an LDAP directory: every entry under a base DN that matches a
filter becomes a `RawRecord` (its DN as `where`), ready for `records.validate`.

Environment (`ldap_settings_from_env`):

    UMPASS_LDAP_URL            ldap://host:389 or ldaps://host:636 (certificates checked)
    UMPASS_LDAP_CA_FILE        the CA that signed an ldaps:// server's certificate (PEM),
                               when it is not among the system's trusted ones
    UMPASS_LDAP_BIND_DN        who reads (read access to the attributes below is enough)
    UMPASS_LDAP_BIND_PASSWORD  its password
    UMPASS_LDAP_BASE_DN        where the intake's entries live, e.g. ou=students,dc=...
    UMPASS_LDAP_FILTER         default (objectClass=inetOrgPerson)
    UMPASS_LDAP_ATTRIBUTES     field=attribute pairs, comma-separated, that replace the
                               defaults one by one ("programme=" reads no programme)

The default attributes are all in OpenLDAP's core, cosine and inetorgperson schemas.
None of those has a date of birth or an identity-document number, so the defaults put
the date of birth in `description` (YYYY-MM-DD or 20070314) and the ID/passport number in
`employeeNumber`; a directory with the SCHAC schema would say
`date_of_birth=schacDateOfBirth`.
"""

from __future__ import annotations

import contextlib
import re
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlparse

from ldap3 import SCHEMA, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import (
    LDAPCommunicationError,
    LDAPException,
    LDAPInvalidCredentialsResult,
    LDAPInvalidDnError,
    LDAPInvalidDNSyntaxResult,
    LDAPInvalidFilterError,
    LDAPNoSuchObjectResult,
    LDAPOperationResult,
    LDAPPasswordIsMandatoryError,
    LDAPResponseTimeoutError,
    LDAPSocketOpenError,
)
from ldap3.core.results import RESULT_SIZE_LIMIT_EXCEEDED, RESULT_TIME_LIMIT_EXCEEDED

# One error for every source (records.py), so the import command reports them all alike;
# its message is one plain sentence without secrets.
from provider.intake.records import FIELDS, IntakeSourceError, RawRecord

DEFAULT_FILTER = "(objectClass=inetOrgPerson)"
DEFAULT_ATTRIBUTES: dict[str, str] = {
    "user_id": "uid",
    "first_name": "givenName",
    "last_name": "sn",
    "email": "mail",
    "phone": "mobile",
    "date_of_birth": "description",
    "id_number": "employeeNumber",
    "programme": "departmentNumber",
    "language": "preferredLanguage",
}
PAGE_SIZE = 500
CONNECT_TIMEOUT_SECONDS = 5
RECEIVE_TIMEOUT_SECONDS = 10
# An attribute description (RFC 4512): a name or a numeric OID.
_ATTRIBUTE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9-]*|\d+(?:\.\d+)+)$")


@dataclass(frozen=True)
class LdapSourceSettings:
    url: str
    bind_dn: str
    bind_password: str = field(repr=False)
    base_dn: str
    search_filter: str = DEFAULT_FILTER
    attributes: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ATTRIBUTES))
    ca_file: str = ""  # for ldaps:// with a private CA; default: the system's trusted CAs


def _parse_attributes(text: str) -> dict[str, str]:
    mapping = dict(DEFAULT_ATTRIBUTES)
    for pair in filter(None, (p.strip() for p in text.split(","))):
        name, sep, attribute = (s.strip() for s in pair.partition("="))
        if not sep or name not in FIELDS:
            raise IntakeSourceError(
                f"UMPASS_LDAP_ATTRIBUTES: {pair!r} is not field=attribute with a field out of "
                f"{', '.join(FIELDS)}"
            )
        if attribute and not _ATTRIBUTE.match(attribute):
            raise IntakeSourceError(
                f"UMPASS_LDAP_ATTRIBUTES: {attribute!r} is not an attribute name"
            )
        if attribute:
            mapping[name] = attribute
        else:
            mapping.pop(name)
    return mapping


def ldap_settings_from_env(env: Mapping[str, str]) -> LdapSourceSettings:
    """The LDAP intake settings, or `IntakeSourceError` naming the variable to fix."""
    missing = [
        name
        for name in (
            "UMPASS_LDAP_URL",
            "UMPASS_LDAP_BIND_DN",
            "UMPASS_LDAP_BIND_PASSWORD",
            "UMPASS_LDAP_BASE_DN",
        )
        if not env.get(name, "").strip()
    ]
    if missing:
        raise IntakeSourceError(f"{', '.join(missing)} not set: the LDAP intake needs them")
    url = env["UMPASS_LDAP_URL"].strip()
    if not url.lower().startswith(("ldap://", "ldaps://")):
        raise IntakeSourceError(f"UMPASS_LDAP_URL={url!r} must start with ldap:// or ldaps://")
    host = urlparse(url).hostname or ""
    if url.lower().startswith("ldap://") and host not in ("127.0.0.1", "::1", "localhost"):
        # The bind password, dates of birth and ID numbers would cross the network in clear.
        raise IntakeSourceError(
            f"UMPASS_LDAP_URL={url!r} is unencrypted: use ldaps:// (plain ldap:// is only "
            "for a directory on this machine)"
        )
    return LdapSourceSettings(
        url=url,
        bind_dn=env["UMPASS_LDAP_BIND_DN"].strip(),
        bind_password=env["UMPASS_LDAP_BIND_PASSWORD"],
        base_dn=env["UMPASS_LDAP_BASE_DN"].strip(),
        search_filter=env.get("UMPASS_LDAP_FILTER", "").strip() or DEFAULT_FILTER,
        attributes=_parse_attributes(env.get("UMPASS_LDAP_ATTRIBUTES", "")),
        ca_file=env.get("UMPASS_LDAP_CA_FILE", "").strip(),
    )


def read_ldap(settings: LdapSourceSettings) -> list[RawRecord]:
    """Every matching entry at once (tests, small directories); the import streams
    `ldap_rows`."""
    return list(ldap_rows(settings))


def ldap_rows(settings: LdapSourceSettings) -> Iterator[RawRecord]:
    """Every matching entry as a `RawRecord`, a page at a time: the first value of each
    mapped attribute (LDAP keeps no order among values), "" where the entry has none.
    All or nothing: a search the server cut short is an error at its end, never a shorter
    intake (the import checks every entry before it writes anything)."""
    url = settings.url
    server = Server(
        url,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        get_info=SCHEMA,  # to name a mistyped attribute instead of reporting it empty
        tls=Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=settings.ca_file or None),
    )
    conn = Connection(
        server,
        user=settings.bind_dn,
        password=settings.bind_password,
        receive_timeout=RECEIVE_TIMEOUT_SECONDS,
        raise_exceptions=True,
        read_only=True,
        auto_referrals=False,
    )
    try:
        _bind(conn, settings)
        yield from _search(conn, settings, _attribute_names(conn, settings.attributes))
    except IntakeSourceError:
        raise
    except (LDAPCommunicationError, LDAPResponseTimeoutError) as exc:
        raise IntakeSourceError(
            f"the LDAP server at {url} stopped answering while the intake was read"
        ) from exc
    except LDAPOperationResult as exc:
        raise IntakeSourceError(
            f"the LDAP server at {url} refused the search ({exc.description}): "
            f"check that {settings.bind_dn} may read {settings.base_dn}"
        ) from exc
    except LDAPException as exc:
        raise IntakeSourceError(f"reading the LDAP server at {url} failed: {exc}") from exc
    finally:
        with contextlib.suppress(LDAPException):
            conn.unbind()


def _bind(conn: Connection, settings: LdapSourceSettings) -> None:
    try:
        conn.bind()
    except (LDAPSocketOpenError, LDAPResponseTimeoutError) as exc:
        message = f"cannot reach the LDAP server at {settings.url}: is it running?"
        if "certificate" in str(exc).lower():  # ldap3 says so only in its text
            message = (
                f"the LDAP server at {settings.url} presented a certificate that is not "
                "trusted here or not for that host: set UMPASS_LDAP_CA_FILE to its CA"
            )
        raise IntakeSourceError(message) from exc
    except (
        LDAPInvalidCredentialsResult,
        LDAPInvalidDNSyntaxResult,
        LDAPPasswordIsMandatoryError,  # an empty password would be an anonymous bind
    ) as exc:
        raise IntakeSourceError(
            f"the LDAP server refused the bind as {settings.bind_dn}: "
            "check UMPASS_LDAP_BIND_DN and UMPASS_LDAP_BIND_PASSWORD"
        ) from exc
    except (LDAPCommunicationError, KeyError, IndexError, TypeError, UnicodeDecodeError) as exc:
        # A port that is not LDAP (HTTP, or ldaps:// spoken as ldap://) hangs up, times out
        # or answers bytes ldap3's decoder fails on with a bare KeyError.
        raise IntakeSourceError(
            f"the server at {settings.url} does not answer as an LDAP server: "
            "check UMPASS_LDAP_URL (ldap:// or ldaps://, host and port)"
        ) from exc


def _attribute_names(conn: Connection, attributes: Mapping[str, str]) -> dict[str, set[str]]:
    """Each field's attribute under all its names, lower case: a server answers with its
    own spelling (`mobile` when asked for `mobileTelephoneNumber`)."""
    schema = conn.server.schema
    if schema is None:  # a server that hides its schema: take the names as given
        return {name: {attribute.lower()} for name, attribute in attributes.items()}
    known = {}
    for name, attribute in attributes.items():
        info = schema.attribute_types.get(attribute) or next(
            (a for a in schema.attribute_types.values() if a.oid == attribute), None
        )
        if info is None:
            raise IntakeSourceError(
                f"the LDAP server has no attribute {attribute} "
                f"(UMPASS_LDAP_ATTRIBUTES maps {name} to it)"
            )
        known[name] = {n.lower() for n in info.name}
    return known


def _search(
    conn: Connection, settings: LdapSourceSettings, names: Mapping[str, set[str]]
) -> Iterator[RawRecord]:
    try:
        entries = conn.extend.standard.paged_search(
            settings.base_dn,
            settings.search_filter,
            search_scope=SUBTREE,
            attributes=sorted(set(settings.attributes.values())),
            paged_size=PAGE_SIZE,
            generator=True,
        )
        entries_read = 0
        for entry in entries:
            if entry.get("type") != "searchResEntry":
                continue  # a referral elsewhere: not followed
            raw = {k.lower(): v for k, v in entry["raw_attributes"].items() if v}
            values = {}
            for name, aliases in names.items():
                found = next((raw[a] for a in aliases if a in raw), None)
                values[name] = found[0].decode("utf-8", "replace") if found else ""
            entries_read += 1
            yield RawRecord(where=entry["dn"], values=values)
    except (LDAPInvalidDNSyntaxResult, LDAPInvalidDnError) as exc:
        raise IntakeSourceError(
            f"the base DN {settings.base_dn} is not a valid DN: check UMPASS_LDAP_BASE_DN"
        ) from exc
    except LDAPNoSuchObjectResult as exc:
        raise IntakeSourceError(
            f"the base DN {settings.base_dn} does not exist on the LDAP server at "
            f"{settings.url}: check UMPASS_LDAP_BASE_DN"
        ) from exc
    except LDAPInvalidFilterError as exc:
        raise IntakeSourceError(
            f"{settings.search_filter} is not an LDAP filter: check UMPASS_LDAP_FILTER"
        ) from exc
    # ldap3 raises on neither limit: the last page's result is the only sign of a cut.
    if conn.result.get("result") == RESULT_SIZE_LIMIT_EXCEEDED:
        raise IntakeSourceError(
            f"the LDAP server at {settings.url} stopped after {entries_read} entries (its size "
            f"limit for {settings.bind_dn}): raise that limit for paged searches"
        )
    if conn.result.get("result") == RESULT_TIME_LIMIT_EXCEEDED:
        raise IntakeSourceError(
            f"the LDAP server at {settings.url} stopped after {entries_read} entries (its time "
            f"limit for {settings.bind_dn}): raise that limit"
        )
