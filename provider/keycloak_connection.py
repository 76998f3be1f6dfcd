"""The one place that opens a connection to Keycloak's admin API.

Three callers, each with its own credential: the service's gateway (provider/keycloak.py)
and the bulk intake (provider/intake/provision.py) sign in as a service account of the
realm they work on; keycloak_config's apply and uninstall sign in as an administrator of the
master realm. python-keycloak's connection is not thread-safe: each caller keeps its own
(a pool, one per thread, one per run).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from keycloak import KeycloakAdmin, KeycloakOpenIDConnection


@dataclass(frozen=True)
class ServiceAccount:
    """A confidential client of `realm` signing in as itself (client credentials grant);
    the connection works on that realm."""

    realm: str
    client_id: str
    secret: str = field(repr=False)


@dataclass(frozen=True)
class MasterAdmin:
    """An administrator of the master realm, through its `admin-cli` client (password
    grant); the connection starts in master and the caller names the realm it works on."""

    username: str
    password: str = field(repr=False)


def admin_api(
    url: str,
    credentials: ServiceAccount | MasterAdmin,
    *,
    timeout: float,
    ca_bundle: str | None = None,
    retries: int = 1,
) -> KeycloakAdmin:
    """An admin API connection to the Keycloak at `url`.

    TLS is always verified: against `ca_bundle` when given, else the system's authorities
    (or REQUESTS_CA_BUNDLE). `retries` is how often a failed request is sent again
    (python-keycloak's default is once; its token request is retried once whatever this
    says, since its token client takes no such option)."""
    if isinstance(credentials, MasterAdmin):
        sign_in = {
            "realm_name": "master",
            "user_realm_name": "master",
            "client_id": "admin-cli",
            "username": credentials.username,
            "password": credentials.password,
        }
    else:
        sign_in = {
            "realm_name": credentials.realm,
            "user_realm_name": credentials.realm,
            "client_id": credentials.client_id,
            "client_secret_key": credentials.secret,
        }
    server_url = url.rstrip("/") + "/"
    connection = KeycloakOpenIDConnection(
        # python-keycloak joins paths onto this URL: the trailing slash keeps a path prefix
        # such as /auth.
        server_url=server_url,
        timeout=timeout,
        verify=ca_bundle or True,
        max_retries=retries,
        **sign_in,
    )
    # What requests would read from the environment on every call (proxies for this URL,
    # its CA bundle) is read once here, by requests' own rule: scanning os.environ twice
    # per request was ~1 ms of the service's CPU per admin call (issue 17). The bundle is
    # set after the connection is made, for requests only (httpx, which python-keycloak
    # also sets up, deprecates a path there).
    session = connection._s  # python-keycloak's requests.Session (no public accessor)
    environ = session.merge_environment_settings(server_url, {}, None, connection.verify, None)
    connection.verify = environ["verify"]
    session.proxies.update(environ["proxies"])
    session.trust_env = False
    return KeycloakAdmin(connection=connection)
