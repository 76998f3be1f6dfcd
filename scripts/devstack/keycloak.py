"""Fetch, start and stop the official Keycloak distribution on loopback.

    python -m devstack.keycloak fetch
    python -m devstack.keycloak start [--instance dev|test] [--http-port N] [--management-port N]
    python -m devstack.keycloak stop  [--instance dev|test]
    python -m devstack.keycloak status [--instance dev|test]
    python -m devstack.keycloak addon [--keycloak-home DIR] [--out FILE]

The zip comes from Maven Central through `mvn dependency:copy` into a cache outside the
repository (`$UMPASS_CACHE_DIR`, default `~/.cache/umpass`), and is unpacked once per
instance so a development server and a test server never share files:

* `dev`  runs `start-dev` with a file database that survives restarts and theme caching
  off, so theme edits show at once. It is unpacked into the checkout (`var/keycloak/`,
  or `$UMPASS_DEV_KEYCLOAK_DIR`): its data belongs with the `.env` that holds its admin
  password, so a second clone gets a server of its own. When the admin credential is
  refused all the same (`.env` deleted and written anew), `repair_admin` gives the server
  `.env`'s credential back with `kc.sh bootstrap-admin`, keeping every realm and user;
* `test` is built once (`kc.sh build --db=dev-mem`) and then started `--optimized`:
  a fresh in-memory database each run and about half the start time.

Each instance gets the project's authenticator JAR (`devstack.keycloak_addon`) in its
`providers/` before it is built; a changed JAR rebuilds the `test` server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from devstack import keycloak_addon
from devstack.processes import (
    command_line,
    log_tail,
    on_free_ports,
    port_in_use,
    spawn,
    tail,
    terminate,
    wait_until,
)

KEYCLOAK_VERSION = os.environ.get("UMPASS_KEYCLOAK_VERSION", "26.7.3")
ARTIFACT = f"org.keycloak:keycloak-quarkus-dist:{KEYCLOAK_VERSION}:zip"
REPO_ROOT = Path(__file__).resolve().parents[2]
THEMES_DIR = REPO_ROOT / "provider" / "themes"
BLOCKLIST = REPO_ROOT / "keycloak_config" / "umpass-common-passwords.txt"
DEFAULT_PORTS = {"dev": (18080, 19000), "test": (18180, 19100)}
HEAP = os.environ.get("UMPASS_KC_HEAP", "-Xms64m -Xmx768m -XX:MaxMetaspaceSize=256m")
TEST_BUILD_OPTIONS = ["--db=dev-mem", "--health-enabled=true"]
# Where Keycloak's CIBA grant asks a user's authentication device (one POST per request):
# fixed, on loopback, below the kernel's ephemeral range (32768-60999), so that the
# suite's CIBA test (tests/integration/test_grants.py) can serve it on whichever server
# of ours it meets. Nothing listens there otherwise: a CIBA request is then refused.
CIBA_CHANNEL_PORT = 28479
CIBA_CHANNEL_URI = f"http://127.0.0.1:{CIBA_CHANNEL_PORT}/ciba"


class KeycloakStartError(Exception):
    """Keycloak could not be fetched or started; the message says what to fix."""


def cache_dir() -> Path:
    return Path(os.environ.get("UMPASS_CACHE_DIR", Path.home() / ".cache" / "umpass"))


def _say(message: str) -> None:
    with contextlib.suppress(OSError):  # a closed terminal or pipe must not stop the work
        print(f"[keycloak] {message}", file=sys.stderr, flush=True)


def fetch() -> Path:
    """The distribution zip, downloaded through Maven on first use."""
    target = cache_dir() / f"keycloak-quarkus-dist-{KEYCLOAK_VERSION}.zip"
    if target.exists():
        return target
    if shutil.which("mvn") is None:
        raise KeycloakStartError("Maven (mvn) is not installed: apt-get install -y maven")
    target.parent.mkdir(parents=True, exist_ok=True)
    _say(f"fetching {ARTIFACT} through Maven (about 160 MB, once)")
    result = subprocess.run(
        [
            "mvn",
            "-B",
            "-q",
            "dependency:copy",
            f"-Dartifact={ARTIFACT}",
            f"-DoutputDirectory={target.parent}",
        ],
        cwd=target.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not target.exists():
        raise KeycloakStartError(
            f"Maven could not fetch {ARTIFACT}: {tail(result.stdout + result.stderr, 3)}"
        )
    return target


def dev_dir() -> Path:
    """Where the checkout's own dev server lives (distribution, data, log, state)."""
    return Path(os.environ.get("UMPASS_DEV_KEYCLOAK_DIR") or REPO_ROOT / "var" / "keycloak")


def home(instance: str) -> Path:
    if instance == "dev":
        return dev_dir() / f"keycloak-{KEYCLOAK_VERSION}"
    return cache_dir() / f"keycloak-{KEYCLOAK_VERSION}" / instance / f"keycloak-{KEYCLOAK_VERSION}"


def install(instance: str) -> Path:
    """Unpack the distribution for `instance` once; return its home."""
    kc_home = home(instance)
    if (kc_home / "bin" / "kc.sh").exists():
        return kc_home
    archive = fetch()
    partial = kc_home.with_name(kc_home.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    _say(f"unpacking Keycloak {KEYCLOAK_VERSION} for the {instance} instance into {kc_home}")
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(partial)
    for script in (partial / f"keycloak-{KEYCLOAK_VERSION}" / "bin").glob("*.sh"):
        script.chmod(0o755)
    shutil.rmtree(kc_home, ignore_errors=True)
    (partial / f"keycloak-{KEYCLOAK_VERSION}").rename(kc_home)
    partial.rmdir()
    return kc_home


def _java_env() -> dict[str, str]:
    env = dict(os.environ)
    env["JAVA_OPTS_KC_HEAP"] = HEAP
    if not env.get("JAVA_HOME") and shutil.which("java") is None:
        raise KeycloakStartError(
            "no Java found: apt-get install -y openjdk-17-jdk-headless (or set JAVA_HOME)"
        )
    return env


def install_addon(kc_home: Path) -> str:
    """The project's authenticator JAR in `kc_home/providers/`; its hash."""
    try:
        return keycloak_addon.install_into(kc_home, cache_dir(), KEYCLOAK_VERSION)
    except keycloak_addon.AddonBuildError as exc:
        raise KeycloakStartError(str(exc)) from exc


def build_optimized(kc_home: Path, options: list[str]) -> None:
    """`kc.sh build` once for these options and this authenticator JAR: the stamp names
    both, so a changed JAR (or option) builds again."""
    stamp = kc_home / ".umpass-build"
    wanted = " ".join([*options, f"addon={install_addon(kc_home)}"])
    if stamp.exists() and stamp.read_text() == wanted:
        return
    _say(f"building the optimized {kc_home.parent.name} server (~20 s)")
    result = subprocess.run(
        [str(kc_home / "bin" / "kc.sh"), "build", *options],
        env=_java_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise KeycloakStartError(
            "kc.sh build failed: " + result.stdout[-500:] + result.stderr[-500:]
        )
    stamp.write_text(wanted)


@dataclass
class RunningKeycloak:
    instance: str
    pid: int
    url: str
    management_url: str
    log_file: Path
    # The process that asked for a throwaway (a test run); None for dev servers.
    owner: int | None = None

    def state_file(self) -> Path:
        return state_path(self.instance)


def state_path(instance: str) -> Path:
    return home(instance).parent / "running.json"


def is_ready(management_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{management_url}/health/ready", timeout=2) as resp:  # noqa: S310
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _link_assets(kc_home: Path, instance: str) -> None:
    for theme in THEMES_DIR.iterdir():
        target = kc_home / "themes" / theme.name
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.exists():
            shutil.rmtree(target)
        if instance == "dev":
            target.symlink_to(theme, target_is_directory=True)  # edits show live
        else:
            shutil.copytree(theme, target)
    blocklists = kc_home / "data" / "password-blacklists"
    blocklists.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(BLOCKLIST, blocklists / BLOCKLIST.name)


def theme_links(service_url: str) -> dict[str, str]:
    """The login theme's links into the service, as the environment theme.properties reads:
    "Activate your account" and "Forgot your password or locked out?"."""
    base = service_url.rstrip("/")
    return {"UMPASS_ACTIVATION_URL": f"{base}/activate/", "UMPASS_RECOVERY_URL": f"{base}/recover/"}


def start_throwaway(admin_password: str, admin_user: str = "admin") -> RunningKeycloak:
    """The test instance on free loopback ports, replacing one an interrupted run left
    (the ports are chosen again if one is taken before Keycloak binds it). One a test run
    that is still alive owns is never replaced: two runs sharing a cache would otherwise
    pull the first one's Keycloak from under it."""
    owner = _owner_of("test")
    if owner is not None and owner != os.getpid() and _alive(owner):
        raise KeycloakStartError(
            f"another test run (process {owner}) is using the test Keycloak of "
            f"{home('test').parent}: wait for it, or give this run its own "
            "UMPASS_CACHE_DIR, or point UMPASS_TEST_KEYCLOAK_URL at a Keycloak you run"
        )
    stop("test")
    running = on_free_ports(
        lambda http_port, management_port: start(
            "test",
            http_port=http_port,
            management_port=management_port,
            admin_user=admin_user,
            admin_password=admin_password,
        ),
        2,
        KeycloakStartError,
    )
    running.owner = os.getpid()
    _record(running)
    return running


def _owner_of(instance: str) -> int | None:
    try:
        owner = json.loads(state_path(instance).read_text()).get("owner")
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, int) else None


def start(
    instance: str = "dev",
    *,
    http_port: int | None = None,
    management_port: int | None = None,
    admin_user: str | None = None,
    admin_password: str | None = None,
    timeout: float | None = None,
) -> RunningKeycloak:
    """Start Keycloak in the background and wait until /health/ready answers."""
    # A busy machine may need longer for dev mode's build at every start (UMPASS_KC_START_TIMEOUT).
    timeout = timeout or float(os.environ.get("UMPASS_KC_START_TIMEOUT") or 240)
    if instance not in DEFAULT_PORTS:
        raise KeycloakStartError(f"unknown instance {instance!r}: use dev or test")
    admin_user = admin_user or os.environ.get("KEYCLOAK_ADMIN_USER", "")
    admin_password = admin_password or os.environ.get("KEYCLOAK_ADMIN_PASSWORD", "")
    if not admin_user or not admin_password:
        raise KeycloakStartError("KEYCLOAK_ADMIN_USER and KEYCLOAK_ADMIN_PASSWORD must be set")
    existing = status(instance)
    if existing is not None:
        if http_port is None or existing.url.endswith(f":{http_port}"):
            return existing
        raise KeycloakStartError(
            f"the {instance} server already runs at {existing.url}: "
            f"stop it first (scripts/keycloak stop --instance {instance})"
        )
    default_http, default_mgmt = DEFAULT_PORTS[instance]
    http_port = http_port or default_http
    management_port = management_port or default_mgmt
    for name, port in (("HTTP", http_port), ("management", management_port)):
        if port_in_use(port):
            raise KeycloakStartError(
                f"{name} port {port} on 127.0.0.1 is in use: stop what holds it "
                f"or choose another port (--http-port / --management-port)"
            )
    kc_home = install(instance)
    if instance == "test":
        build_optimized(kc_home, TEST_BUILD_OPTIONS)
    else:
        install_addon(kc_home)  # start-dev builds at every start
    _link_assets(kc_home, instance)
    common = [
        "--http-host=127.0.0.1",
        f"--http-port={http_port}",
        f"--http-management-port={management_port}",
        f"--spi-ciba-auth-channel--ciba-http-auth-channel--http-authentication-channel-uri={CIBA_CHANNEL_URI}",
    ]
    if instance == "dev":
        args = ["start-dev", "--health-enabled=true", *common]
    else:
        args = ["start", "--optimized", "--http-enabled=true", "--hostname-strict=false", *common]
    env = _java_env()
    base_url = os.environ.get("UMPASS_BASE_URL", "").rstrip("/")
    if base_url:
        for name, url in theme_links(base_url).items():
            env[name] = env.get(name) or url
    env["KC_BOOTSTRAP_ADMIN_USERNAME"] = admin_user
    env["KC_BOOTSTRAP_ADMIN_PASSWORD"] = admin_password
    log_file = kc_home.parent / "keycloak.log"
    _say(f"starting the {instance} server on http://127.0.0.1:{http_port} (log: {log_file})")
    process = spawn([str(kc_home / "bin" / "kc.sh"), *args], env, log_file, append=False)
    running = RunningKeycloak(
        instance=instance,
        pid=process.pid,
        url=f"http://127.0.0.1:{http_port}",
        management_url=f"http://127.0.0.1:{management_port}",
        log_file=log_file,
    )

    def ended() -> bool:
        return process.poll() is not None

    if not wait_until(lambda: is_ready(running.management_url), timeout, poll=0.25, give_up=ended):
        if ended():
            raise KeycloakStartError("Keycloak exited while starting: " + log_tail(log_file))
        _kill_group(process.pid)
        raise KeycloakStartError(
            f"Keycloak was not ready after {timeout:.0f} s; see {log_file} "
            "(a busy machine: UMPASS_KC_START_TIMEOUT=600)"
        )
    _record(running)
    return running


def _record(running: RunningKeycloak) -> None:
    state = {**running.__dict__, "log_file": str(running.log_file)}
    running.state_file().write_text(json.dumps(state))


class AdminRefused(KeycloakStartError):
    """The server answers but refuses the admin credential it was given."""


def admin_token(url: str, username: str, password: str) -> str:
    """A master-realm admin token; `AdminRefused` when the credential is refused."""
    body = urllib.parse.urlencode(
        {
            "grant_type": "password",
            "client_id": "admin-cli",
            "username": username,
            "password": password,
        }
    ).encode()
    request = urllib.request.Request(  # noqa: S310 - our own loopback server
        f"{url}/realms/master/protocol/openid-connect/token", data=body, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310
            return str(json.load(resp)["access_token"])
    except urllib.error.HTTPError as exc:
        if exc.code in (400, 401):
            raise AdminRefused(f"the server at {url} refused the admin {username!r}") from exc
        raise KeycloakStartError(f"{url} answered {exc.code} to an admin sign-in") from exc


def _admin_call(url: str, token: str, method: str, path: str, body: object = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - our own loopback server
        f"{url}/admin/realms/master{path}",
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310
        raw = resp.read()
    return json.loads(raw) if raw else None


def repair_admin(instance: str, admin_user: str, admin_password: str) -> RunningKeycloak:
    """Give the server `admin_user` with `admin_password` back, keeping its data.

    The checkout's dev server was first started with another `.env` (deleted and written
    anew): its master realm knows another password. Keycloak's own recovery path: stop it,
    `kc.sh bootstrap-admin user` puts a temporary admin into its database, start it again,
    and through that temporary admin set (or create) ours; the temporary one is deleted."""
    running = status(instance)
    if running is None:
        raise KeycloakStartError(f"the {instance} server is not running: nothing to repair")
    http_port = int(running.url.rsplit(":", 1)[1])
    management_port = int(running.management_url.rsplit(":", 1)[1])
    stop(instance)
    helper = f"umpass-repair-{secrets.token_hex(4)}"
    helper_password = secrets.token_urlsafe(24)
    _say(f"giving the {instance} server the admin password from .env (kc.sh bootstrap-admin)")
    env = {**_java_env(), "UMPASS_REPAIR_PASSWORD": helper_password}
    result = subprocess.run(
        [
            str(home(instance) / "bin" / "kc.sh"),
            "bootstrap-admin",
            "user",
            f"--username={helper}",
            "--password:env=UMPASS_REPAIR_PASSWORD",
            "--no-prompt",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if result.returncode != 0:
        raise KeycloakStartError(
            "kc.sh bootstrap-admin failed: " + tail(result.stdout + result.stderr, 5)
        )
    running = start(
        instance,
        http_port=http_port,
        management_port=management_port,
        admin_user=admin_user,
        admin_password=admin_password,
    )
    token = admin_token(running.url, helper, helper_password)
    quoted = urllib.parse.quote(admin_user)
    found = _admin_call(running.url, token, "GET", f"/users?username={quoted}&exact=true")
    credential = {"type": "password", "value": admin_password, "temporary": False}
    if isinstance(found, list) and found:
        user_id = found[0]["id"]
        _admin_call(running.url, token, "PUT", f"/users/{user_id}/reset-password", credential)
    else:
        _admin_call(
            running.url,
            token,
            "POST",
            "/users",
            {"username": admin_user, "enabled": True, "credentials": [credential]},
        )
        created = _admin_call(running.url, token, "GET", f"/users?username={quoted}&exact=true")
        user_id = created[0]["id"]  # type: ignore[index]
        role = _admin_call(running.url, token, "GET", "/roles/admin")
        _admin_call(running.url, token, "POST", f"/users/{user_id}/role-mappings/realm", [role])
    helpers = _admin_call(running.url, token, "GET", f"/users?username={helper}&exact=true")
    for user in helpers if isinstance(helpers, list) else []:
        _admin_call(running.url, token, "DELETE", f"/users/{user['id']}")
    admin_token(running.url, admin_user, admin_password)  # AdminRefused if it did not hold
    _say(f"the {instance} server accepts the admin {admin_user!r} from .env again")
    return running


def status(instance: str) -> RunningKeycloak | None:
    """The running server of `instance` that this tool started, if it still answers."""
    path = state_path(instance)
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    running = RunningKeycloak(**{**data, "log_file": Path(data["log_file"])})
    if _is_our_server(running.pid, instance) and is_ready(running.management_url):
        return running
    path.unlink(missing_ok=True)
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_group(pid: int, grace: float = 30.0) -> None:
    def finished() -> bool:  # kc.sh: reaped when it is our child, else no longer there
        try:
            return os.waitpid(pid, os.WNOHANG)[0] != 0
        except ChildProcessError:
            return not _alive(pid)

    terminate(pid, grace, gone=finished, group=True, poll=0.2)


def peak_memory_mb(group: int) -> float:
    """The highest peak RSS (VmHWM) of any process in the server's process group."""
    peak_kb = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.getpgid(int(proc.name)) != group:
                continue
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_kb = max(peak_kb, int(line.split()[1]))
        except (OSError, ValueError):
            continue
    return peak_kb / 1024


def stop(instance: str) -> bool:
    """Stop the server of `instance`; True when one was running."""
    path = state_path(instance)
    if not path.exists():
        return False
    pid = int(json.loads(path.read_text())["pid"])
    path.unlink(missing_ok=True)
    if not _is_our_server(pid, instance):
        return False  # the recorded process is gone; its pid may belong to another now
    peak = peak_memory_mb(pid)
    _kill_group(pid)  # before saying anything: stderr may be a pipe that Ctrl-C just closed
    _say(f"stopped the {instance} server (peak memory {peak:.0f} MB)")
    return True


def _is_our_server(pid: int, instance: str) -> bool:
    cmdline = command_line(pid).replace(b"\0", b" ")
    # kc.sh (test: still the shell) or the java it exec'd (dev: -Dkc.home.dir=...).
    return str(home(instance) / "bin").encode() in cmdline


def _with_admin(running: RunningKeycloak) -> RunningKeycloak:
    """`running`, once it accepts the admin credential from the environment."""
    user = os.environ.get("KEYCLOAK_ADMIN_USER", "")
    password = os.environ.get("KEYCLOAK_ADMIN_PASSWORD", "")
    try:
        admin_token(running.url, user, password)
        return running
    except AdminRefused:
        return repair_admin(running.instance, user, password)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["addon"]:  # build the authenticator JAR: scripts/keycloak addon --help
        return keycloak_addon.main(argv[1:])
    parser = argparse.ArgumentParser(prog="scripts/keycloak", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["fetch", "start", "stop", "status"])
    parser.add_argument(
        "--repair-admin",
        action="store_true",
        help="start: when the server refuses KEYCLOAK_ADMIN_USER/PASSWORD, give them back",
    )
    parser.add_argument("--instance", default="dev", choices=sorted(DEFAULT_PORTS))
    parser.add_argument("--http-port", type=int)
    parser.add_argument("--management-port", type=int)
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            print(install(args.instance))
        elif args.command == "start":
            running = start(
                args.instance, http_port=args.http_port, management_port=args.management_port
            )
            if args.repair_admin:
                running = _with_admin(running)
            print(running.url)
        elif args.command == "stop":
            if not stop(args.instance):
                _say("not running")
        else:
            running = status(args.instance)
            print(running.url if running else "not running")
            return 0 if running else 1
    except KeycloakStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
