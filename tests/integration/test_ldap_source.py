"""The LDAP intake source against a real slapd: students read and validated, every page
read, and each way the directory can say no told in one plain sentence."""

from __future__ import annotations

import contextlib
import secrets
import socketserver
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from devstack import slapd

from provider.intake.checked import validate
from provider.intake.ldap_source import (
    DEFAULT_ATTRIBUTES,
    IntakeSourceError,
    LdapSourceSettings,
    ldap_settings_from_env,
    read_ldap,
)
from provider.intake.records import IntakeInvalid, Problem
from tests.support.ldap_server import seed_students, student

USER_ID_LENGTH = 7


def settings_for(server: slapd.SlapdServer, base_dn: str, **changes) -> LdapSourceSettings:
    values = {
        "url": server.url,
        "bind_dn": server.admin_dn,
        "bind_password": server.admin_password,
        "base_dn": base_dn,
        **changes,
    }
    return LdapSourceSettings(**values)


def read_error(settings: LdapSourceSettings) -> str:
    with pytest.raises(IntakeSourceError) as caught:
        read_ldap(settings)
    message = str(caught.value)
    assert not settings.bind_password or settings.bind_password not in message
    return message


def test_seeded_students_become_intake_records(slapd_server: slapd.SlapdServer) -> None:
    ana = student("dc12345", first_name="Ana", last_name="Lei", language="pt")
    kit = student("dc23456", first_name="Kit", date_of_birth="2006-02-28", programme="")
    seeded = seed_students(slapd_server, [ana, kit])

    raw = read_ldap(settings_for(slapd_server, seeded.base_dn))
    records = sorted(
        validate(raw, user_id_length=USER_ID_LENGTH, today=date(2026, 9, 1)),
        key=lambda r: r.user_id,
    )

    assert [(r.where, r.user_id) for r in records] == [
        (f"uid=dc12345,{seeded.base_dn}", "dc12345"),
        (f"uid=dc23456,{seeded.base_dn}", "dc23456"),
    ]
    first, second = records
    assert (first.first_name, first.last_name, first.email) == ("Ana", "Lei", "dc12345@example.edu")
    assert first.phone == ana["phone"]  # already E.164
    assert first.date_of_birth == date(2007, 3, 14)  # LDAP-style 20070314
    assert (first.id_number, first.programme, first.language) == (
        "1234567(8)",
        "BSc Computing",
        "pt",
    )
    assert (second.date_of_birth, second.programme, second.language) == (
        date(2006, 2, 28),
        "",  # an absent optional attribute is empty, not an error
        "zh_Hant",
    )


def test_short_id_number_is_reported_by_dn(slapd_server: slapd.SlapdServer) -> None:
    seeded = seed_students(slapd_server, [student(index=1), student(index=2, id_number="A1")])

    raw = read_ldap(settings_for(slapd_server, seeded.base_dn))
    with pytest.raises(IntakeInvalid) as caught:
        validate(raw, user_id_length=USER_ID_LENGTH)

    assert caught.value.problems == [
        Problem(seeded.dns[1], "ID/passport number has fewer than 4 letters or digits")
    ]


def test_every_page_is_read_and_a_size_limit_is_an_error(slapd_server: slapd.SlapdServer) -> None:
    seeded = seed_students(slapd_server, 1201)  # three pages of 500
    reader_pw = secrets.token_urlsafe(12)
    reader = seed_students(slapd_server, [{**student(index=9), "password": reader_pw}])

    raw = read_ldap(settings_for(slapd_server, seeded.base_dn))
    assert sorted(r.where for r in raw) == sorted(seeded.dns)
    assert len(validate(raw, user_id_length=USER_ID_LENGTH)) == 1201

    # slapd's default size limit (500) holds for paged searches by anyone but the rootdn;
    # ldap3 does not raise on it, so a cut intake would look complete without the check.
    as_reader = settings_for(
        slapd_server, seeded.base_dn, bind_dn=reader.dns[0], bind_password=reader_pw
    )
    assert read_error(as_reader) == (
        f"the LDAP server at {slapd_server.url} stopped after 500 entries (its size limit "
        f"for {reader.dns[0]}): raise that limit for paged searches"
    )


def test_stopped_server_is_reported_plainly() -> None:
    server = slapd.start(admin_password=secrets.token_urlsafe(12))
    assert slapd.stop(server)
    assert not server.directory.exists()

    message = read_error(settings_for(server, server.base_dn))

    assert message == f"cannot reach the LDAP server at {server.url}: is it running?"


def test_wrong_bind_password_is_reported_plainly(slapd_server: slapd.SlapdServer) -> None:
    settings = settings_for(
        slapd_server, slapd_server.base_dn, bind_password="not-" + secrets.token_urlsafe(12)
    )

    assert read_error(settings) == (
        f"the LDAP server refused the bind as {slapd_server.admin_dn}: "
        "check UMPASS_LDAP_BIND_DN and UMPASS_LDAP_BIND_PASSWORD"
    )
    assert settings.bind_password not in repr(settings)


def test_empty_password_is_refused_not_an_anonymous_bind(slapd_server: slapd.SlapdServer) -> None:
    message = read_error(settings_for(slapd_server, slapd_server.base_dn, bind_password=""))

    assert message.startswith(f"the LDAP server refused the bind as {slapd_server.admin_dn}:")


def test_bad_base_dn_filter_and_attribute_are_named(slapd_server: slapd.SlapdServer) -> None:
    base = slapd_server.base_dn
    missing = f"ou=nowhere,{base}"

    assert read_error(settings_for(slapd_server, missing)) == (
        f"the base DN {missing} does not exist on the LDAP server at {slapd_server.url}: "
        "check UMPASS_LDAP_BASE_DN"
    )
    assert read_error(settings_for(slapd_server, "students")) == (
        "the base DN students is not a valid DN: check UMPASS_LDAP_BASE_DN"
    )
    assert read_error(settings_for(slapd_server, base, search_filter="(uid=x")) == (
        "(uid=x is not an LDAP filter: check UMPASS_LDAP_FILTER"
    )
    typo = LdapSourceSettings(
        slapd_server.url,
        slapd_server.admin_dn,
        slapd_server.admin_password,
        base,
        attributes={**DEFAULT_ATTRIBUTES, "date_of_birth": "dateOfBirth"},
    )
    assert read_error(typo) == (
        "the LDAP server has no attribute dateOfBirth "
        "(UMPASS_LDAP_ATTRIBUTES maps date_of_birth to it)"
    )


def test_an_alias_attribute_name_is_read(slapd_server: slapd.SlapdServer) -> None:
    seeded = seed_students(slapd_server, [student(index=3)])
    attributes = {**DEFAULT_ATTRIBUTES, "phone": "mobileTelephoneNumber"}
    settings = settings_for(slapd_server, seeded.base_dn, attributes=attributes)

    [record] = read_ldap(settings)

    assert record.values["phone"].startswith("+853")  # slapd answers it as `mobile`


class _HttpOnly(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.recv(1024)
        self.request.sendall(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")


@contextlib.contextmanager
def http_port() -> Iterator[int]:
    with socketserver.TCPServer(("127.0.0.1", 0), _HttpOnly) as server:
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield server.server_address[1]
        finally:
            server.shutdown()


def test_a_server_that_is_not_ldap_is_reported_plainly(slapd_server: slapd.SlapdServer) -> None:
    with http_port() as port:
        url = f"ldap://127.0.0.1:{port}"
        message = read_error(settings_for(slapd_server, slapd_server.base_dn, url=url))

    assert message == (
        f"the server at {url} does not answer as an LDAP server: "
        "check UMPASS_LDAP_URL (ldap:// or ldaps://, host and port)"
    )


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    loopback = x509.SubjectAlternativeName([x509.IPAddress(ip_address("127.0.0.1"))])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(loopback, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@contextlib.contextmanager
def tls_port(cert_file: Path, key_file: Path) -> Iterator[int]:
    """A TLS listener that completes handshakes and then hangs up (no LDAP behind it)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            with (
                contextlib.suppress(OSError),
                context.wrap_socket(self.request, server_side=True) as tls,
            ):
                tls.recv(1)

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler) as server:
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        try:
            yield server.server_address[1]
        finally:
            server.shutdown()


def test_ldaps_certificates_are_checked(slapd_server: slapd.SlapdServer, tmp_path: Path) -> None:
    cert_file, key_file = self_signed(tmp_path)
    with tls_port(cert_file, key_file) as port:
        url = f"ldaps://127.0.0.1:{port}"
        untrusted = settings_for(slapd_server, slapd_server.base_dn, url=url)
        assert read_error(untrusted) == (
            f"the LDAP server at {url} presented a certificate that is not trusted here "
            "or not for that host: set UMPASS_LDAP_CA_FILE to its CA"
        )
        # Trusted through UMPASS_LDAP_CA_FILE, the handshake passes and LDAP is what fails.
        trusted = settings_for(slapd_server, slapd_server.base_dn, url=url, ca_file=str(cert_file))
        assert read_error(trusted).startswith(f"the server at {url} does not answer as an LDAP")


def test_settings_from_env() -> None:
    env = {
        "UMPASS_LDAP_URL": "ldaps://ldap.example.edu",
        "UMPASS_LDAP_BIND_DN": "cn=intake,dc=example,dc=edu",
        "UMPASS_LDAP_BIND_PASSWORD": "s3cret-value",
        "UMPASS_LDAP_BASE_DN": "ou=students,dc=example,dc=edu",
    }
    settings = ldap_settings_from_env(env)
    assert settings.search_filter == "(objectClass=inetOrgPerson)"
    assert settings.attributes == DEFAULT_ATTRIBUTES
    assert settings.ca_file == ""  # ldaps:// trusts the system's CAs unless told otherwise
    assert "s3cret-value" not in repr(settings)

    changed = ldap_settings_from_env(
        {**env, "UMPASS_LDAP_ATTRIBUTES": "date_of_birth=schacDateOfBirth, programme="}
    )
    assert changed.attributes["date_of_birth"] == "schacDateOfBirth"
    assert "programme" not in changed.attributes
    assert changed.attributes["user_id"] == "uid"

    with pytest.raises(IntakeSourceError, match="UMPASS_LDAP_BIND_PASSWORD not set"):
        ldap_settings_from_env({**env, "UMPASS_LDAP_BIND_PASSWORD": ""})
    with pytest.raises(IntakeSourceError, match="'birthday=x' is not field=attribute"):
        ldap_settings_from_env({**env, "UMPASS_LDAP_ATTRIBUTES": "birthday=x"})
    with pytest.raises(IntakeSourceError, match="must start with ldap:// or ldaps://"):
        ldap_settings_from_env({**env, "UMPASS_LDAP_URL": "ldap.example.edu"})
