"""Fixtures the integration tests share beyond tests/conftest.py."""

import pytest
from keycloak import KeycloakAdmin

from tests.conftest import KeycloakUnderTest, master_admin
from tests.support.ldap_server import slapd_server  # noqa: F401


@pytest.fixture(scope="module")
def kc(keycloak_server: KeycloakUnderTest) -> KeycloakAdmin:
    """A master-realm admin, for tests that build and delete realms of their own."""
    return master_admin(keycloak_server)
