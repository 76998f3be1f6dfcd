"""Fixtures the integration tests share beyond tests/conftest.py."""

from tests.support.ldap_server import slapd_server  # noqa: F401
