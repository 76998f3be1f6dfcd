"""Benchmark: a first sign-in through activation against Keycloak's own way of doing it.

    scripts/bench first-sign-in [--students 30] [--concurrency 10]

Starts its own Keycloak with the realm's PRODUCTION password hashing, and the service as a
real `umpass serve` process whose address (UMPASS_BASE_URL) is the realm's activation
identity provider. Two realms of that one Keycloak, N students each, `--concurrency` at a
time, each a browser over HTTP (every redirect fetched and counted, forms read from the
page) from the demo client's authorization URL to its redirect URI carrying a `code`
(never fetched):

* ours (the realm as `apply` makes it): username at Keycloak, on to the service, identify,
  policies, contacts kept, password, the end page's move on, back through Keycloak's
  broker;
* native (a second realm, as Keycloak alone does it): the activation code is a temporary
  password; username and that password on Keycloak's login page, then its required
  actions `TERMS_AND_CONDITIONS` and `UPDATE_PASSWORD`. Same password policy, same hashing.

Keycloak's calls to the service's back-channel (token, userinfo, JWKS) go through a
counting proxy of their own (devstack.counting_proxy). Prints journeys per second, p50/p95
per journey, requests and CPU per journey (Keycloak, service), a chart, and last
`RESULT first_sign_in_ratio=<ours s per journey / native s per journey> ...`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

from keycloak import KeycloakAdmin
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from devstack.background import Background, start_background
from devstack.bench_activation import _percentile, _student
from devstack.bench_profile import Recording
from devstack.bench_stack import bench_stack, cpu_seconds, enrol_with_proven_contacts, process_group
from devstack.counting_proxy import COUNTS_PATH
from devstack.http_browser import Browser, BrowserError, Page
from devstack.processes import free_port
from keycloak_config.apply import ApplyOptions, apply_realm
from provider.config import load_settings
from provider.date_input import form_fields
from provider.proofing import new_activation_code
from provider.services import Services
from provider.storage import migrate

console = Console(stderr=True)
PASSWORD = "lantern {n} orbit velvet meadow"  # noqa: S105 - a benchmark passphrase
DOB = date(2006, 6, 6)
NATIVE_REALM = "native-bench"
DEMO_CLIENT = "umpass-demo"
TERMS, UPDATE_PASSWORD = "TERMS_AND_CONDITIONS", "UPDATE_PASSWORD"


@dataclass(frozen=True)
class Student:
    user_id: str
    code: str  # ours: the activation code; native: the temporary password
    n: int


@dataclass(frozen=True)
class Journey:
    seconds: float
    visited: list[tuple[str, str, int]]  # method, URL, status of each browser request

    @property
    def requests(self) -> int:
        return len(self.visited)


@dataclass
class Phase:
    name: str
    journeys: list[Journey]
    wall: float
    cpu: dict[str, float]  # process -> CPU seconds during the phase
    calls: dict[str, dict[str, int]]  # counter -> "METHOD path" -> calls during the phase
    load: float  # the machine's 1-minute load average as the phase ended (others' work too)

    @property
    def per_s(self) -> float:
        return len(self.journeys) / self.wall

    def cpu_ms(self, process: str) -> float:
        return 1000 * self.cpu.get(process, 0.0) / len(self.journeys)

    @property
    def requests(self) -> float:
        return sum(j.requests for j in self.journeys) / len(self.journeys)

    def latency_ms(self, q: float) -> float:
        return 1000 * _percentile([j.seconds for j in self.journeys], q)


def _progress() -> Progress:
    from provider.progress import progress_bar

    return progress_bar(console=console, transient=False, label_width=28)


def _authorization_url(keycloak: str, realm: str, redirect_uri: str) -> tuple[str, str]:
    """The demo client's authorization request (code + PKCE S256), and its state."""
    state = secrets.token_urlsafe(8)
    query = {
        "client_id": DEMO_CLIENT,
        "redirect_uri": redirect_uri,
        "response_type": "code",
        "scope": "openid profile email",
        "state": state,
        "nonce": secrets.token_urlsafe(8),
        # The challenge of some verifier: the code is never exchanged here.
        "code_challenge": secrets.token_urlsafe(32)[:43],
        "code_challenge_method": "S256",
    }
    return f"{keycloak}/realms/{realm}/protocol/openid-connect/auth?{urlencode(query)}", state


def _arrived_with_code(browser: Browser, state: str, where: Page) -> None:
    if browser.arrived is None:
        raise BrowserError(f"never reached the app: ended at {where.url} (HTTP {where.status})")
    query = parse_qs(urlparse(browser.arrived).query)
    if "code" not in query or query.get("state") != [state]:
        raise BrowserError(f"the app got no code: {browser.arrived}")


def ours_journey(keycloak: str, realm: str, redirect_uri: str, who: Student) -> Journey:
    """Keycloak's username page, then activation at the service, then back."""
    started = time.perf_counter()
    browser = Browser(stop_at=redirect_uri)
    url, state = _authorization_url(keycloak, realm, redirect_uri)
    page = browser.get(url)
    page = browser.submit(page, page.form_with("username"), {"username": who.user_id})
    page = browser.submit(
        page,
        page.form_with("activation_code"),
        {
            "user_id": who.user_id,
            "activation_code": who.code,
            **form_fields(DOB),
            "id_last4": f"{who.n:07d}"[-4:],
        },
    )
    form = page.form_with("csrf_token")
    boxes = {name: "y" for name in form.names if name.startswith("accept_")}
    if not boxes:
        raise BrowserError(f"no policies to accept at {page.url}")
    page = browser.submit(page, form, boxes)
    page = browser.submit(
        page,
        page.form_with("email_choice"),
        {"action": "choose", "email_choice": "keep", "phone_choice": "keep"},
    )
    password = PASSWORD.format(n=who.n)
    page = browser.submit(
        page, page.form_with("confirm"), {"password": password, "confirm": password}
    )
    # The end page moves on by itself (after showing the user ID; its Continue at once).
    page = browser.follow_refresh(page)
    _arrived_with_code(browser, state, page)
    return Journey(time.perf_counter() - started, browser.visited)


def native_journey(keycloak: str, realm: str, redirect_uri: str, who: Student) -> Journey:
    """Keycloak alone: username and temporary password, then its required actions in
    whatever order it shows them."""
    started = time.perf_counter()
    browser = Browser(stop_at=redirect_uri)
    url, state = _authorization_url(keycloak, realm, redirect_uri)
    page = browser.get(url)
    form = page.form_with("username")
    if form.has("password"):
        page = browser.submit(page, form, {"username": who.user_id, "password": who.code})
    else:  # a username-first browser flow
        page = browser.submit(page, form, {"username": who.user_id})
        page = browser.submit(page, page.form_with("password"), {"password": who.code})
    password = PASSWORD.format(n=who.n)
    for _ in range(4):  # at most the two actions, and a page again on a refusal
        if browser.arrived is not None:
            break
        forms = page.forms()
        if any(f.has("password-new") for f in forms):
            page = browser.submit(
                page,
                page.form_with("password-new"),
                {"password-new": password, "password-confirm": password},
            )
        elif any(f.has("accept") for f in forms):
            page = browser.submit(page, page.form_with("accept"), {}, button="accept")
        else:
            raise BrowserError(f"an unexpected page at {page.url} (HTTP {page.status})")
    _arrived_with_code(browser, state, page)
    return Journey(time.perf_counter() - started, browser.visited)


# -- the native realm -------------------------------------------------------------------


def make_native_realm(admin: KeycloakAdmin, policy: str, redirect_base: str) -> None:
    """A realm as a university would set it up with Keycloak alone."""
    admin.create_realm(
        {"realm": NATIVE_REALM, "enabled": True, "passwordPolicy": policy}, skip_exists=False
    )
    admin.change_current_realm(NATIVE_REALM)
    terms = admin.get_required_action_by_alias(TERMS)
    if terms is None:
        raise RuntimeError(f"Keycloak has no {TERMS} required action")
    admin.update_required_action(TERMS, {**terms, "enabled": True})
    admin.create_client(
        {
            "clientId": DEMO_CLIENT,
            "enabled": True,
            "protocol": "openid-connect",
            "publicClient": True,
            "standardFlowEnabled": True,
            "directAccessGrantsEnabled": False,
            "redirectUris": [f"{redirect_base}/*"],
            "attributes": {"pkce.code.challenge.method": "S256"},
        }
    )


def native_student(admin: KeycloakAdmin, n: int) -> Student:
    user_id = f"n{n:06d}"
    code = new_activation_code()
    admin.create_user(
        {
            "username": user_id,
            "enabled": True,
            "email": f"{user_id}@bench.example.edu",
            "emailVerified": True,
            "firstName": "Native",
            "lastName": f"Student{n}",
            "credentials": [{"type": "password", "value": code, "temporary": True}],
            "requiredActions": [TERMS, UPDATE_PASSWORD],
        }
    )
    return Student(user_id, code, n)


# -- running ------------------------------------------------------------------------------

BACKCHANNEL = "Keycloak → service"
ADMIN_CALLS = "service → Keycloak admin"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _counts(proxy: Background) -> Counter[str]:
    with urllib.request.urlopen(proxy.direct_url + COUNTS_PATH, timeout=10) as resp:  # noqa: S310
        counts: Counter[str] = Counter()
        for call, n in json.load(resp).items():
            counts[_UUID.sub("{id}", call)] += n  # calls about one account each: one kind
        return counts


def run_phase(
    name: str,
    walk: Callable[[Student], Journey],
    students: list[Student],
    concurrency: int,
    warm_up: int,
    processes: dict[str, list[int]],
    counters: dict[str, Background],
    trace: bool,
    profile: Callable[[], Callable[[], None]] | None = None,
) -> Phase:
    # Not counted: one journey alone, then as many as run at once (Keycloak's JIT, the
    # service's pool of admin connections, each with its token, filled as in a day's use).
    warm = walk(students[0])
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(walk, students[1:warm_up]))
    if trace:
        console.print(f"[bold]{name}[/]: one journey's {warm.requests} browser requests")
        for method, url, status in warm.visited:
            console.print(f"  {method:4} {status} {url.split('?', 1)[0]}")
    measured = students[warm_up:]
    stop_profile = profile() if profile else None
    calls_before = {label: _counts(proxy) for label, proxy in counters.items()}
    before = {p: cpu_seconds(pids) for p, pids in processes.items()}
    journeys: list[Journey] = []
    with _progress() as progress, ThreadPoolExecutor(max_workers=concurrency) as pool:
        task = progress.add_task(f"{name}: first sign-ins", total=len(measured))
        started = time.perf_counter()
        futures = [pool.submit(walk, who) for who in measured]
        for future in futures:
            journeys.append(future.result())
            progress.advance(task)
        wall = time.perf_counter() - started
    cpu = {p: cpu_seconds(pids) - before[p] for p, pids in processes.items()}
    calls = {label: dict(_counts(proxy) - calls_before[label]) for label, proxy in counters.items()}
    if stop_profile:
        stop_profile()
    return Phase(name, journeys, wall, cpu, calls, os.getloadavg()[0])


def _py_spy(pid: int, out: Path) -> Callable[[], Callable[[], None]]:
    """Sample the service (its workers too) with py-spy while a phase runs (the same
    recording as `scripts/bench activation --profile`); raw collapsed stacks to `out`.
    Costs CPU of its own: a profiled run is not a measurement."""

    def start() -> Callable[[], None]:
        recording = Recording(pid, out)
        time.sleep(2)  # attached to every worker before the first journey

        def stop() -> None:
            recording.stop()
            console.print(f"profile of the service: {out}")

        return stop

    return start


def _counter(name: str, port: int, target: str, env: dict[str, str], log: Path) -> Background:
    argv = [sys.executable, "-m", "devstack.counting_proxy", "--port", str(port)]
    return start_background(name, [*argv, "--target", target], port, COUNTS_PATH, env, log)


def run(students: int, concurrency: int, trace: bool = False, profile: Path | None = None) -> int:
    service_port, backchannel_port, admin_port = free_port(), free_port(), free_port()
    service = f"http://127.0.0.1:{service_port}"
    demo = f"http://127.0.0.1:{free_port()}/demo"  # never fetched: the journey ends there
    redirect_uri = f"{demo}/callback"
    warm_up = 1 + concurrency
    total = students + warm_up
    console.print("[bold]starting Keycloak[/] (production hashing)")
    parts: dict[str, Background] = {}
    with bench_stack(
        # All students share 127.0.0.1: the per-address limits would stop them.
        UMPASS_IDENTIFY_LIMIT="100000 per minute",
        UMPASS_SIGN_IN_LIMIT="100000 per minute",
        UMPASS_BASE_URL=service,
        # Keycloak's calls to the service go through a counter of their own.
        UMPASS_BACKCHANNEL_URL=f"http://127.0.0.1:{backchannel_port}",
        UMPASS_DEMO_BASE_URL=demo,
    ) as stack:
        keycloak = stack.keycloak.url
        env = {
            **stack.env,
            "UMPASS_OIDC_KEY_FILE": str(stack.workdir / "oidc-signing-key.pem"),
            "UMPASS_KC_POOL_SIZE": str(max(4, concurrency // 2)),
        }
        try:
            # Production hashing: no fast_hash.
            options = ApplyOptions.from_env(env, theme=True, with_demo=True)
            apply_realm(options)
            svc = Services.assemble(load_settings(env))
            migrate.upgrade(svc.engine)
            admin = options.admin()
            policy = admin.get_realm(options.realm)["passwordPolicy"]
            make_native_realm(admin, policy, demo)

            ours: list[Student] = []
            native: list[Student] = []
            with _progress() as progress:
                task = progress.add_task("creating students", total=2 * total)
                for n in range(total):
                    issued = enrol_with_proven_contacts(svc, _student(n, "s"))
                    ours.append(Student(issued.user_id, issued.code, n))
                    progress.advance(task)
                for n in range(total):
                    native.append(native_student(admin, n))
                    progress.advance(task)

            work = stack.workdir
            parts[BACKCHANNEL] = _counter(
                BACKCHANNEL, backchannel_port, service, env, work / "backchannel.log"
            )
            service_env = dict(env)
            if trace:
                # The service's admin calls through a counter too (an extra hop for
                # every call: only when asked). The browser still goes to Keycloak.
                parts[ADMIN_CALLS] = _counter(
                    ADMIN_CALLS, admin_port, keycloak, env, work / "admin.log"
                )
                service_env["UMPASS_KEYCLOAK_URL"] = parts[ADMIN_CALLS].direct_url
                service_env["UMPASS_BROKER_REDIRECT_URI"] = (
                    f"{keycloak}/realms/{options.realm}/broker/umpass-activation/endpoint"
                )
            argv = [sys.executable, "-m", "provider.cli", "serve", "--host", "127.0.0.1"]
            argv += ["--port", str(service_port), "--workers", "1"]
            argv += ["--threads", str(max(8, concurrency))]
            parts["service"] = start_background(
                "service", argv, service_port, "/healthz", service_env, work / "service.log"
            )
            processes = {
                "keycloak": process_group(stack.keycloak.pid),
                "service": process_group(parts["service"].pid or 0),
                "counters": [
                    p
                    for c in parts.values()
                    if c.name != "service"
                    for p in process_group(c.pid or 0)
                ],
                "bench client": [os.getpid()],
            }
            counters = {k: v for k, v in parts.items() if k != "service"}
            spy = _py_spy(parts["service"].pid or 0, profile) if profile else None
            phases = [
                run_phase(
                    "ours",
                    lambda who: ours_journey(keycloak, options.realm, redirect_uri, who),
                    ours,
                    concurrency,
                    warm_up,
                    processes,
                    counters,
                    trace,
                    spy,
                ),
                run_phase(
                    "native",
                    lambda who: native_journey(keycloak, NATIVE_REALM, redirect_uri, who),
                    native,
                    concurrency,
                    warm_up,
                    processes,
                    counters,
                    trace,
                ),
            ]
        finally:
            for part in parts.values():
                part.stop()
    report(phases, students, concurrency)
    return 0


def report(phases: list[Phase], students: int, concurrency: int) -> None:
    ours, native = phases
    table = Table(
        "per journey",
        "ours",
        "native",
        title=f"First sign-in: {students} students, {concurrency} at a time",
    )
    rows: list[tuple[str, Callable[[Phase], str]]] = [
        ("journeys / s", lambda p: f"{p.per_s:.2f}"),
        ("p50 ms", lambda p: f"{p.latency_ms(0.5):.0f}"),
        ("p95 ms", lambda p: f"{p.latency_ms(0.95):.0f}"),
        ("browser requests", lambda p: f"{p.requests:.1f}"),
        ("Keycloak CPU ms", lambda p: f"{p.cpu_ms('keycloak'):.0f}"),
        ("service CPU ms", lambda p: f"{p.cpu_ms('service'):.0f}"),
        ("bench client CPU ms", lambda p: f"{p.cpu_ms('bench client'):.0f}"),
        ("call counters' CPU ms", lambda p: f"{p.cpu_ms('counters'):.0f}"),
        ("load average after", lambda p: f"{p.load:.1f}"),
    ]
    for label, cell in rows:
        table.add_row(label, cell(ours), cell(native))
    console.print(table)
    for counter in ours.calls:
        calls = Table("call", "ours", "native", title=f"{counter} calls per journey")
        for call in sorted(set(ours.calls[counter]) | set(native.calls[counter])):
            calls.add_row(
                call, *(f"{p.calls[counter].get(call, 0) / len(p.journeys):.2f}" for p in phases)
            )
        console.print(calls)
    chart = Table("", "", title=f"CPU per journey, ms ({os.cpu_count()} cores)")
    widest = max(p.cpu_ms("keycloak") + p.cpu_ms("service") for p in phases) or 1.0
    for phase in phases:
        for process, mark in (("keycloak", "█"), ("service", "▒")):
            ms = phase.cpu_ms(process)
            chart.add_row(f"{phase.name} {process}", f"{mark * int(40 * ms / widest)} {ms:.0f}")
    console.print(chart)
    ratio = native.per_s / ours.per_s  # ours s per journey / native s per journey
    print(
        f"RESULT first_sign_in_ratio={ratio:.2f} ours_per_s={ours.per_s:.2f} "
        f"native_per_s={native.per_s:.2f} ours_requests={ours.requests:.1f} "
        f"native_requests={native.requests:.1f} "
        f"ours_kc_cpu_ms={ours.cpu_ms('keycloak'):.0f} "
        f"native_kc_cpu_ms={native.cpu_ms('keycloak'):.0f} "
        f"service_cpu_ms={ours.cpu_ms('service'):.0f} "
        f"p95_ours_ms={ours.latency_ms(0.95):.0f} p95_native_ms={native.latency_ms(0.95):.0f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench first-sign-in")
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument(
        "--trace", action="store_true", help="print one journey's requests on each path"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy the service during the measured first sign-ins (collapsed stacks here)",
    )
    args = parser.parse_args(argv)
    return run(args.students, args.concurrency, args.trace, args.profile)


if __name__ == "__main__":
    sys.exit(main())
