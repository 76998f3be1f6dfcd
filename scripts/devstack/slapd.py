"""A throwaway OpenLDAP server on loopback, for the LDAP tests and for development.

    python -m devstack.slapd start [--port N]
    python -m devstack.slapd stop

Debian's `slapd` runs from a plain `slapd.conf` written into a fresh temporary directory
(schemas core, cosine, inetorgperson and nis; one mdb database holding only the entry
dc=example,dc=edu) on a free port of 127.0.0.1 unless one is given. Nothing is installed
here: the package comes from `scripts/test` (`apt-get install slapd ldap-utils`). The
directory holds the configuration, the database, the pidfile and slapd's own output;
`stop` removes it.

Access: the rootdn manages everything; any other entry may bind, replace its own
`userPassword` (Keycloak's LDAP federation writes the password as the user when asked to)
and read the rest once bound; anonymous clients may only bind.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ldap3 import NONE, Connection, Server
from ldap3.core.exceptions import LDAPException

from devstack.processes import (
    command_line,
    log_tail,
    on_free_ports,
    read_pidfile,
    terminate,
    wait_until,
)

BASE_DN = "dc=example,dc=edu"
ADMIN_DN = f"cn=admin,{BASE_DN}"
SCHEMA_DIR = Path("/etc/ldap/schema")
SCHEMAS = ("core", "cosine", "inetorgperson", "nis")
MODULE_DIR = Path("/usr/lib/ldap")
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
INSTALL_HINT = "apt-get install -y slapd ldap-utils (scripts/test installs them when missing)"


class SlapdError(Exception):
    """slapd could not be started or stopped; the message says what to fix."""


@dataclass(frozen=True)
class SlapdServer:
    url: str
    base_dn: str
    admin_dn: str
    admin_password: str = field(repr=False)
    pid: int
    directory: Path


def _slapd_binary() -> str:
    # /usr/sbin is not on every PATH (a non-root shell), so look there too.
    found = shutil.which("slapd") or shutil.which("slapd", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise SlapdError(f"slapd is not installed: {INSTALL_HINT}")
    missing = [s for s in SCHEMAS if not (SCHEMA_DIR / f"{s}.schema").exists()]
    if missing or not (MODULE_DIR / "back_mdb.so").exists():
        what = ", ".join(f"{s}.schema" for s in missing) or f"{MODULE_DIR}/back_mdb.so"
        raise SlapdError(f"the OpenLDAP installation lacks {what}: {INSTALL_HINT}")
    return found


def _ssha(password: str) -> str:
    """`{SSHA}` for rootpw, so the password never sits in the file in clear."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt).digest()  # noqa: S324 - slapd's own scheme
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def _config(directory: Path, admin_password: str) -> str:
    includes = "\n".join(f"include {SCHEMA_DIR}/{name}.schema" for name in SCHEMAS)
    root = f'dn.exact="{ADMIN_DN}"'
    return f"""{includes}
modulepath {MODULE_DIR}
moduleload back_mdb
pidfile {directory}/slapd.pid
argsfile {directory}/slapd.args

database mdb
suffix "{BASE_DN}"
rootdn "{ADMIN_DN}"
rootpw {_ssha(admin_password)}
directory {directory}/data
# A throwaway database: no fsync per write.
dbnosync
index objectClass eq
index uid eq

access to attrs=userPassword
  by {root} manage
  by self write
  by anonymous auth
  by * none
access to *
  by {root} manage
  by users read
  by * none
"""


def _add_base(url: str, admin_password: str) -> bool:
    """Bind as the admin and add the suffix's own entry; False while slapd is not ready."""
    server = Server(url, connect_timeout=1, get_info=NONE)
    conn = Connection(server, ADMIN_DN, admin_password, receive_timeout=2)
    try:
        if not conn.bind():
            return False
        conn.add(BASE_DN, ["dcObject", "organization"], {"dc": "example", "o": "Example"})
        return conn.result["result"] in (0, 68)  # added, or there from an earlier run
    except LDAPException:
        return False
    finally:
        with contextlib.suppress(LDAPException):
            conn.unbind()


def _read_pid(directory: Path) -> int | None:
    return read_pidfile(directory / "slapd.pid")


def _log_tail(directory: Path) -> str:
    return log_tail(directory / "slapd.log", 3)


def start(
    *, admin_password: str | None = None, port: int | None = None, directory: Path | None = None
) -> SlapdServer:
    """Start slapd and return once it accepts the admin's bind and holds the base entry.

    Without `port`, on a free one (chosen again if it is taken before slapd binds it)."""
    password = admin_password or secrets.token_urlsafe(18)
    if port is not None:
        return _start(password, port, directory)
    return on_free_ports(lambda chosen: _start(password, chosen, directory), 1, SlapdError)


def _start(password: str, port: int, directory: Path | None) -> SlapdServer:
    binary = _slapd_binary()
    home = directory or Path(tempfile.mkdtemp(prefix="umpass-slapd-"))
    (home / "data").mkdir(parents=True, exist_ok=True)
    conf = home / "slapd.conf"
    conf.write_text(_config(home, password))
    conf.chmod(0o600)
    url = f"ldap://127.0.0.1:{port}"
    with open(home / "slapd.log", "wb") as log:
        # slapd detaches by itself; its parent exits at once (non-zero on a bad config).
        result = subprocess.run(
            [binary, "-f", str(conf), "-h", f"{url}/"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            check=False,
            timeout=START_TIMEOUT,
        )
    if result.returncode != 0:
        raise SlapdError(f"slapd did not start (exit {result.returncode}): {_log_tail(home)}")
    pid: int | None = None

    def ready() -> bool:
        nonlocal pid
        pid = _read_pid(home)
        return pid is not None and _add_base(url, password)

    def died() -> bool:  # it started and died (e.g. the port was taken meanwhile)
        return pid is not None and not _is_ours(pid, home)

    if wait_until(ready, START_TIMEOUT, poll=0.05, give_up=died) and pid is not None:
        return SlapdServer(url, BASE_DN, ADMIN_DN, password, pid, home)
    pid = _read_pid(home)
    if pid is not None and _is_ours(pid, home):
        terminate(pid, STOP_TIMEOUT)
    raise SlapdError(
        f"slapd did not accept a bind at {url} within {START_TIMEOUT:.0f} s: {_log_tail(home)}"
    )


def _is_ours(pid: int, directory: Path) -> bool:
    """True while `pid` is a slapd running from `directory`'s configuration."""
    return str(directory / "slapd.conf").encode() in command_line(pid).split(b"\0")


def stop(server: SlapdServer, *, remove: bool = True) -> bool:
    """Stop the server by its pid and (by default) delete its directory.

    True when it was running. A pid that now belongs to another process is left alone.
    """
    running = _is_ours(server.pid, server.directory)
    if running:
        terminate(server.pid, STOP_TIMEOUT)
    if remove:
        shutil.rmtree(server.directory, ignore_errors=True)
    return running


# -- command line -----------------------------------------------------------------------


def _state_path() -> Path:
    cache = Path(os.environ.get("UMPASS_CACHE_DIR", Path.home() / ".cache" / "umpass"))
    return cache / "slapd.json"


def _running_from_state() -> SlapdServer | None:
    try:
        state = json.loads(_state_path().read_text())
    except (OSError, ValueError):
        return None
    # The password is not kept: stopping needs only the pid and the directory.
    return SlapdServer(
        state["url"],
        state["base_dn"],
        state["admin_dn"],
        "",
        int(state["pid"]),
        Path(state["directory"]),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devstack.slapd", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["start", "stop"])
    parser.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one)")
    args = parser.parse_args(argv)
    known = _running_from_state()
    if args.command == "stop":
        _state_path().unlink(missing_ok=True)
        if known is None or not stop(known):
            print("no slapd of ours was running", file=sys.stderr)
            return 1
        print(f"stopped slapd at {known.url}")
        return 0
    if known is not None and _is_ours(known.pid, known.directory):
        print(f"error: slapd already runs at {known.url} (stop it first)", file=sys.stderr)
        return 2
    password = os.environ.get("UMPASS_LDAP_BIND_PASSWORD") or secrets.token_urlsafe(18)
    try:
        server = start(admin_password=password, port=args.port)
    except SlapdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    state = {k: str(v) for k, v in asdict(server).items() if k != "admin_password"}
    _state_path().parent.mkdir(parents=True, exist_ok=True)
    _state_path().write_text(json.dumps(state))
    print(f"UMPASS_LDAP_URL={server.url}")
    print(f"UMPASS_LDAP_BIND_DN={server.admin_dn}")
    print(f"UMPASS_LDAP_BASE_DN={server.base_dn}")
    if "UMPASS_LDAP_BIND_PASSWORD" not in os.environ:
        # Printed once, like an activation code: it is kept nowhere in clear.
        print(f"UMPASS_LDAP_BIND_PASSWORD={password}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
