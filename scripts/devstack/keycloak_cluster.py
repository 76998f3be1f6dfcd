"""Keycloak in production mode: nodes of one cluster behind the stack's TLS proxy.

One distribution is unpacked and built once per cache (`kc.sh build --db=postgres
--health-enabled=true`, under `$UMPASS_CACHE_DIR/keycloak-<version>/stack`). Each node
gets its own home: a hard-linked copy of the built one (jars are only read) with its own
`data/` and `conf/`, since a node writes temporary files and transaction logs there.

Nodes run `kc.sh start --optimized` with `--hostname` pinned to the public HTTPS URL,
X-Forwarded-* believed from 127.0.0.1 only, plain HTTP on loopback (TLS ends at nginx),
and the default `ispn` caches over the `jdbc-ping` stack: nodes on one database find each
other through it. Each node needs its own HTTP, management and cluster port.
"""

from __future__ import annotations

import html
import os
import re
import secrets
import shutil
import signal
import subprocess
import urllib.parse
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import requests

from devstack import keycloak as kc
from devstack.postgres import BIN_DIR as PG_BIN
from devstack.postgres import RunningPostgres
from devstack.processes import (
    exited,
    find_ours,
    group_ended,
    log_tail,
    reap_group,
    send,
    spawn,
    terminate,
    wait_until,
)

BUILD_OPTIONS = ["--db=postgres", "--health-enabled=true"]
# What tells Keycloak its schema is current: Liquibase's change log and lock, and the
# model version (no realm data).
SCHEMA_RECORDS = ("databasechangelog", "databasechangeloglock", "migration_model")
START_TIMEOUT = 300.0
# Infinispan logs each new membership: "ISPN000094: Received new cluster view for channel
# ISPN: [node-a|1] (2) [node-a, node-b]", or ISPN000093 "..., MERGED cluster view ...:
# MergeView::[node-a|2] (2) [...]" when two nodes that started alone find each other.
_VIEW = re.compile(
    rb"ISPN00009[34]: Received new(?:, MERGED)? cluster view for channel \S+: "
    rb"(?:MergeView::)?\[[^\]]*\] \((\d+)\)"
)


def built_home() -> Path:
    """The distribution built for PostgreSQL (with the project's authenticator JAR), once
    per cache and JAR (about 30 s the first time)."""
    home = kc.install("stack")
    kc.build_optimized(home, BUILD_OPTIONS)
    return home


def _schema_cache() -> Path:
    return kc.cache_dir() / f"keycloak-{kc.KEYCLOAK_VERSION}" / "stack-schema.sql"


def restore_schema(pg: RunningPostgres, database: str) -> bool:
    """Load the schema Keycloak made on an earlier first start into an empty `database`.

    Creating it (Liquibase, some 200 change sets) is most of a first start: a minute or
    more on two busy cores. Only the tables and Liquibase's own records are kept, never
    a realm: the nodes still create the master realm and the bootstrap admin themselves.
    False when there is nothing cached yet.
    """
    cached = _schema_cache()
    if not cached.exists():
        return False
    _pg_tool(["psql", "-v", "ON_ERROR_STOP=1", "-q", "-d", database, "-f", str(cached)], pg)
    return True


def save_schema(pg: RunningPostgres, database: str) -> None:
    """Keep the schema (and the records that say it is current) for the next start."""
    schema = _pg_tool(["pg_dump", "--schema-only", "--no-owner", database], pg)
    tables = [f"--table={name}" for name in SCHEMA_RECORDS]
    records = _pg_tool(["pg_dump", "--data-only", "--no-owner", *tables, database], pg)
    cached = _schema_cache()
    temp = cached.with_suffix(".partial")
    temp.write_text(schema + records)
    temp.replace(cached)


def _pg_tool(argv: list[str], pg: RunningPostgres) -> str:
    result = subprocess.run(
        [str(PG_BIN / argv[0]), "-h", "127.0.0.1", "-p", str(pg.port), "-U", pg.user, *argv[1:]],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        raise kc.KeycloakStartError(f"{argv[0]} failed: {result.stderr.strip()[-300:]}")
    return result.stdout


def make_node_home(built: Path, target: Path) -> Path:
    """A node's own home: the built distribution hard-linked, `data` and `conf` copied."""
    shutil.rmtree(target, ignore_errors=True)

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:  # another filesystem
            shutil.copy2(src, dst)

    for entry in built.iterdir():
        if entry.name == "data":
            continue
        if entry.name in ("conf", "themes") or entry.is_file():
            copy = shutil.copytree if entry.is_dir() else shutil.copy2
            copy(entry, target / entry.name)
        else:
            shutil.copytree(entry, target / entry.name, copy_function=link, symlinks=True)
    (target / "data").mkdir()
    # A restarted PostgreSQL leaves every pooled connection dead, and each would fail one
    # request (HTTP 500) before the pool noticed: check a connection as it is taken.
    (target / "conf" / "quarkus.properties").write_text(
        "quarkus.datasource.jdbc.validate-on-borrow=true\n"
    )
    # The realm's theme and the password blocklist its policy names, as the test server has.
    kc._link_assets(target, "stack")
    return target


@dataclass
class KeycloakNode:
    """One node; `start()` / `kill()` may be repeated (fault tests)."""

    index: int
    home: Path
    http_port: int
    management_port: int
    cluster_port: int
    log_file: Path
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict, repr=False)  # on top of os.environ
    pid: int | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def direct_url(self) -> str:
        """The node itself, bypassing nginx (tests only: browsers never come here)."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}"

    def configure(
        self,
        *,
        public_url: str,
        jdbc_url: str,
        db_user: str,
        ca_file: Path,
        admin_user: str,
        admin_password: str,
        service_url: str,
    ) -> None:
        self.argv = [
            str(self.home / "bin" / "kc.sh"),
            "start",
            "--optimized",
            f"--hostname={public_url}",
            "--proxy-headers=xforwarded",
            "--proxy-trusted-addresses=127.0.0.1",
            "--http-enabled=true",
            "--http-host=127.0.0.1",
            f"--http-port={self.http_port}",
            f"--http-management-port={self.management_port}",
            "--cache-embedded-network-bind-address=127.0.0.1",
            f"--cache-embedded-network-bind-port={self.cluster_port}",
            f"--db-url={jdbc_url}",
            f"--db-username={db_user}",
            # Keycloak calls the service's OIDC endpoints over HTTPS through nginx.
            f"--truststore-paths={ca_file}",
        ]
        self.env = {
            "JAVA_OPTS_KC_HEAP": kc.HEAP,
            "KC_BOOTSTRAP_ADMIN_USERNAME": admin_user,
            "KC_BOOTSTRAP_ADMIN_PASSWORD": admin_password,
            # The login theme's links into the service (theme.properties reads them).
            **kc.theme_links(service_url),
        }

    def start(self, *, wait: bool = True, timeout: float = START_TIMEOUT) -> None:
        """Start the node (again, on the same ports) in its own process group."""
        if not self.is_ours():
            process = spawn(self.argv, {**kc._java_env(), **self.env}, self.log_file, cwd=self.home)
            self.pid = process.pid
            self.process = process
        if wait:
            self.wait_ready(timeout)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        def ended() -> bool:
            return exited(self.process, self.is_ours)

        # Each probe of a node still starting is a line in its log: one every 0.5 s.
        if wait_until(lambda: kc.is_ready(self.management_url), timeout, poll=0.5, give_up=ended):
            return
        if ended():
            raise kc.KeycloakStartError(
                f"Keycloak node {self.index + 1} exited while starting: {log_tail(self.log_file)}"
            )
        raise kc.KeycloakStartError(
            f"Keycloak node {self.index + 1} was not ready after {timeout:.0f} s; "
            f"see {self.log_file}"
        )

    def is_ready(self) -> bool:
        return self.is_ours() and kc.is_ready(self.management_url)

    def is_ours(self) -> bool:
        """True while this node's kc.sh runs; one restarted by another process sharing the
        state file is found, and adopted, by its command line."""
        found = find_ours(self.pid, self._matches)
        if found is not None and found != self.pid:
            self.pid, self.process = found, None
        return found is not None

    def _matches(self, cmdline: list[bytes]) -> bool:
        return str(self.home / "bin" / "kc.sh").encode() in cmdline

    def kill(self) -> None:
        """SIGKILL the whole node at once, as a crash would."""
        if self.is_ours() and self.pid is not None:
            send(self.pid, signal.SIGKILL, group=True)
            reap_group(self.pid, 10.0)

    def stop(self, grace: float = 30.0) -> None:
        """A clean shutdown (SIGTERM: the node leaves the cluster), SIGKILL after `grace`."""
        if not self.is_ours() or self.pid is None:
            return
        # The node's whole process group (kc.sh and its java) must end.
        group = self.pid
        if not terminate(group, grace, gone=lambda: group_ended(group), group=True, poll=0.05):
            reap_group(group, 10.0)

    def cluster_size(self) -> int:
        """Members in the last cluster view this node logged (0 before the first)."""
        try:
            views = _VIEW.findall(self.log_file.read_bytes())
        except OSError:
            return 0
        return int(views[-1]) if views else 0

    def to_state(self) -> dict[str, Any]:
        state = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "process"}
        return {**state, "home": str(self.home), "log_file": str(self.log_file)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> KeycloakNode:
        return cls(**{**state, "home": Path(state["home"]), "log_file": Path(state["log_file"])})


def sign_in_handed_over(
    start: KeycloakNode, finish: KeycloakNode, *, public_url: str, username: str, password: str
) -> bool:
    """Open the master realm's sign-in form on `start` and submit it to `finish`.

    A sign-in in progress lives only in the cluster's distributed cache (not in the
    database), so `finish` issues a code only when the two nodes share that cache.
    """
    query = urllib.parse.urlencode(
        {
            "client_id": "security-admin-console",
            "redirect_uri": f"{public_url}/admin/master/console/",
            "response_type": "code",
            "scope": "openid",
            "code_challenge_method": "S256",
            "code_challenge": secrets.token_urlsafe(32),
        }
    )
    try:
        form = requests.get(
            f"{start.direct_url}/realms/master/protocol/openid-connect/auth?{query}", timeout=30
        )
        action = re.search(r'action="([^"]+)"', form.text)
        if form.status_code != 200 or action is None:
            return False
        # The form posts to the public URL; send it to the other node instead.
        path = html.unescape(action.group(1)).removeprefix(public_url)
        cookies = "; ".join(f"{c.name}={c.value}" for c in form.cookies)
        answer = requests.post(
            finish.direct_url + path,
            data={"username": username, "password": password},
            headers={"Cookie": cookies},
            allow_redirects=False,
            timeout=30,
        )
    except requests.RequestException:
        return False
    return answer.status_code == 302 and "code=" in answer.headers.get("Location", "")


def cluster_formed(nodes: list[KeycloakNode]) -> bool:
    """True when every running node's latest cluster view holds all the running nodes."""
    running = [node for node in nodes if node.is_ours()]
    return bool(running) and all(node.cluster_size() == len(running) for node in running)
