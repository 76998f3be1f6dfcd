"""Benchmark: students activate over HTTP, at saturation and at a stated arrival rate,
against a floor.

    scripts/bench activation [--students 50] [--concurrency 50] [--rate R]
                             [--database postgresql|sqlite] [--profile]

Starts its own Keycloak (test instance, free ports) with the realm's PRODUCTION password
hashing, a throwaway PostgreSQL (as deployed; `--database sqlite` for the embedded
default) and the service as a real `umpass serve` process (gunicorn, one worker). After a
few warm-up students (not counted):

* saturation: N students walk the whole flow over HTTP (identify, policies, contacts,
  password), `--concurrency` at a time, as fast as the stack answers;
* floor: N other pending students reach the same end state (permanent password,
  active, accepted policies) by one admin-API call each, same concurrency, no web flow;
* the two are measured ours, floor, floor, ours (ABBA), N students each time, and added up:
  Keycloak keeps warming for minutes, which would favour whichever side ran second;
* open loop: N more students arrive at random (Poisson) at `--rate` per second (by
  default 60 % of the floor's rate just measured) and walk the flow: the latency a
  student sees at that load, per step;
* framework floor: N students walk four steps of an app built from the service's
  libraries and nothing else (devstack.framework_floor, the same gunicorn settings and
  database): what the stack costs before the service does any work of its own.

Prints the steps' p50/p95 for both runs, the CPU of every process per activation (with
Keycloak's against the floor's), the admin-API calls per activation by purpose, the
service's peak RSS and, with `--profile`, where the service's CPU goes (py-spy); last
`RESULT activation_ratio=<service s per activation / floor s per activation> ...`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import re
import secrets
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import requests
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from devstack import postgres as pg_server
from devstack.background import Background, serve_on_a_free_port
from devstack.bench_profile import Profile, Recording
from devstack.bench_stack import (
    bench_stack,
    cpu_seconds,
    enrol_with_proven_contacts,
    peak_rss_mb,
    process_group,
    process_tree,
)
from keycloak_config.apply import ApplyOptions, apply_realm
from provider.config import load_settings
from provider.date_input import form_fields
from provider.keycloak import ACCEPTED_POLICIES, KeycloakGateway
from provider.progress import progress_bar
from provider.services import Services
from provider.storage import migrate
from provider.students import NewStudent

console = Console(stderr=True)
_CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
_ADMIN_CALLS = re.compile(r'^umpass_keycloak_admin_calls_total\{action="([a-z_]+)"\} ([0-9.e+]+)$')
PASSWORD = "lantern {n} orbit velvet meadow"  # noqa: S105 - a benchmark passphrase
DOB = date(2006, 6, 6)
STEPS = ("identify", "policies", "contacts", "password")
# Students through each path before anything is measured: Keycloak's JIT compiles its hot
# paths over the first few hundred requests, and that CPU would land on whichever path ran
# first.
WARM_UP = 20
FRAMEWORK_STEPS = 4  # devstack.framework_floor.STEPS: a GET and a POST each
# What each admin call is for, in the table of calls per activation.
CALL_PURPOSE = {
    "find_user": "identify: the pending account behind the four details",
    "get_user": "read-before-write (a PUT replaces the whole user)",
    "update_user": "the activation: password + active + policies, one PUT",
    "unlink": "drop an old link to the activation provider",
    "password_policy": "the realm's password policy (cached)",
}


def _progress() -> Progress:
    return progress_bar(console=console, transient=False, label_width=28)


def _student(n: int, prefix: str) -> NewStudent:
    user_id = f"{prefix}{n:06d}"
    return NewStudent(
        user_id,
        "Bench",
        f"Student{n}",
        f"{user_id}@bench.example.edu",
        "+85362000000",
        DOB,
        f"B{n:07d}",
    )


def _walk(base: str, user_id: str, code: str, n: int) -> dict[str, float]:
    """One student's flow; seconds per step (the GET of its page + the POST)."""
    s = requests.Session()
    times: dict[str, float] = {}

    def step(name: str, answers: Callable[[str], dict[str, str]]) -> None:
        started = time.perf_counter()
        _get_and_post(s, f"{base}/activate/{name}", answers)
        times[name] = time.perf_counter() - started

    last4 = f"{n:07d}"[-4:]
    step(
        "identify",
        lambda _: {
            "user_id": user_id,
            "activation_code": code,
            **form_fields(DOB),
            "id_last4": last4,
        },
    )
    step(
        "policies", lambda page: dict.fromkeys(re.findall(r'name="(accept_[a-z0-9_]+)"', page), "y")
    )
    step("contacts", lambda _: {"action": "choose", "email_choice": "keep", "phone_choice": "keep"})
    password = PASSWORD.format(n=n)
    step("password", lambda _: {"password": password, "confirm": password})
    return times


def _get_and_post(s: requests.Session, url: str, answers: Callable[[str], dict[str, str]]) -> None:
    """A step as a browser does it: its page, then its form posted with the page's CSRF
    token; a 302 is the step done."""
    page = s.get(url, timeout=120)
    token = _CSRF.search(page.text)
    if not token:
        raise RuntimeError(f"{url}: no form (HTTP {page.status_code})")
    done = s.post(
        url,
        data={"csrf_token": token.group(1), **answers(page.text)},
        allow_redirects=False,
        timeout=120,
    )
    if done.status_code != 302:
        raise RuntimeError(f"{url}: HTTP {done.status_code}")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclasses.dataclass
class _Meters:
    """CPU seconds per process kind, read before and after a phase."""

    kinds: dict[str, Callable[[], list[int]]]

    def read(self) -> dict[str, float]:
        return {kind: cpu_seconds(pids()) for kind, pids in self.kinds.items()}

    @contextmanager
    def phase(self, into: dict[str, float]) -> Iterator[None]:
        before = self.read()
        yield
        after = self.read()
        into.update({kind: after[kind] - before[kind] for kind in after})


def _add(total: dict[str, float], more: dict[str, float]) -> None:
    for kind, value in more.items():
        total[kind] = total.get(kind, 0.0) + value


def _admin_calls(base: str, token: str) -> Counter[str]:
    """The service's admin-API requests so far, by action (its /metrics)."""
    text = requests.get(
        f"{base}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30
    ).text
    calls: Counter[str] = Counter()
    for line in text.splitlines():
        if m := _ADMIN_CALLS.match(line):
            calls[m[1]] = int(float(m[2]))
    return calls


@contextmanager
def _database(kind: str, workdir: Path) -> Iterator[tuple[str, Callable[[], list[int]]]]:
    """The service's database URL and a reader of its server's processes (none for SQLite)."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir}/bench.db", list
        return
    console.print("[bold]starting PostgreSQL[/]")
    server = pg_server.start_throwaway()
    try:
        url = server.create_database(f"bench_{secrets.token_hex(3)}")
        yield url, lambda: process_tree(pid) if (pid := server.pid()) else []
    finally:
        server.destroy()


def _run_closed(
    label: str, base: str, students: list[tuple[str, str, int]], concurrency: int
) -> tuple[float, dict[str, list[float]]]:
    """Every student at once, `concurrency` at a time: seconds for all, seconds per step."""
    per_step: dict[str, list[float]] = defaultdict(list)
    with _progress() as progress, ThreadPoolExecutor(max_workers=concurrency) as pool:
        task = progress.add_task(label, total=len(students))
        started = time.perf_counter()
        futures = [pool.submit(_walk, base, u, c, n) for u, c, n in students]
        for future in futures:
            for name, seconds in future.result().items():
                per_step[name].append(seconds)
            progress.advance(task)
        return time.perf_counter() - started, per_step


def _run_floor(
    label: str, gateway: KeycloakGateway, user_ids: list[str], concurrency: int
) -> tuple[float, list[float]]:
    """The same end state by one admin-API activation each: seconds for all, and each's."""
    accepted = {ACCEPTED_POLICIES: ["it-acceptable-use@2026-09:2026-11-26T00:00:00Z"]}

    def one(index: int, uid: str) -> float:
        began = time.perf_counter()
        if not gateway.activate(uid, PASSWORD.format(n=index), attributes=accepted):
            raise RuntimeError("floor activation wrote nothing")
        return time.perf_counter() - began

    with _progress() as progress, ThreadPoolExecutor(max_workers=concurrency) as pool:
        task = progress.add_task(label, total=len(user_ids))
        started = time.perf_counter()
        latencies = []
        for future in [pool.submit(one, i, uid) for i, uid in enumerate(user_ids)]:
            latencies.append(future.result())
            progress.advance(task)
        return time.perf_counter() - started, latencies


def _walk_framework_floor(base: str) -> None:
    """One student's eight requests through the framework floor (devstack.framework_floor)."""
    s = requests.Session()
    answers = {"answer": "yes", "other": "no", "agree": "y"}
    for n in range(FRAMEWORK_STEPS):
        _get_and_post(s, f"{base}/step/{n}", lambda _: answers)


def _run_framework_floor(
    label: str, env: dict[str, str], workdir: Path, students: int, concurrency: int, threads: int
) -> float:
    """CPU seconds of the framework floor's process tree for `students` walks."""

    floor = serve_on_a_free_port(
        workdir / "framework-floor.log",
        env,  # scripts/ is on PYTHONPATH (scripts/bootstrap)
        threads=threads,
        name="framework floor",
        module="devstack.framework_floor",
    )
    try:
        base = floor.direct_url
        with ThreadPoolExecutor(concurrency) as pool:  # warm-up, as the service had
            list(pool.map(lambda _: _walk_framework_floor(base), range(WARM_UP)))
        before = cpu_seconds(process_tree(floor.pid or 0))
        with _progress() as progress, ThreadPoolExecutor(concurrency) as pool:
            task = progress.add_task(label, total=students)
            for _ in pool.map(lambda _: _walk_framework_floor(base), range(students)):
                progress.advance(task)
        return cpu_seconds(process_tree(floor.pid or 0)) - before
    finally:
        floor.stop()


def _run_open(
    base: str, students: list[tuple[str, str, int]], rate: float
) -> dict[str, list[float]]:
    """Students arriving at random (Poisson, `rate` per second), each walking on arrival."""
    arrivals = random.Random(17)  # the same arrival pattern on every run  # noqa: S311
    at, offsets = 0.0, []
    for _ in students:
        at += arrivals.expovariate(rate)
        offsets.append(at)
    per_step: dict[str, list[float]] = defaultdict(list)
    lock = threading.Lock()
    with _progress() as progress:
        task = progress.add_task(f"open loop at {rate:.2f}/s", total=len(students))
        start = time.perf_counter()

        def arrive(offset: float, student: tuple[str, str, int]) -> None:
            time.sleep(max(0.0, start + offset - time.perf_counter()))  # the arrival time
            times = _walk(base, *student)
            with lock:
                for name, seconds in times.items():
                    per_step[name].append(seconds)
            progress.advance(task)

        with ThreadPoolExecutor(max_workers=len(students)) as pool:
            for future in [
                pool.submit(arrive, o, s) for o, s in zip(offsets, students, strict=True)
            ]:
                future.result()
    return per_step


def run(args: argparse.Namespace) -> int:
    students, concurrency = args.students, args.concurrency
    metrics_token = secrets.token_urlsafe(32)
    console.print("[bold]starting Keycloak[/] (production hashing)")
    service: Background | None = None
    # All students share 127.0.0.1: the per-address identify limit would stop them.
    with (
        bench_stack(
            UMPASS_IDENTIFY_LIMIT="100000 per minute", UMPASS_METRICS_TOKEN=metrics_token
        ) as stack,
        _database(args.database, stack.workdir) as (database_url, database_pids),
    ):
        running, workdir = stack.keycloak, stack.workdir
        env = {**stack.env, "DATABASE_URL": database_url}
        try:
            # Production hashing: no fast_hash.
            apply_realm(ApplyOptions.from_env(env, theme=True, with_demo=True))
            settings = load_settings(env)
            svc = Services.assemble(settings)
            migrate.upgrade(svc.engine)

            groups: dict[str, list[tuple[str, str, int]]] = {"w": [], "s": [], "t": [], "o": []}
            sizes = {"w": WARM_UP, "s": students, "t": students, "o": students}
            floor_ids: list[str] = []
            with _progress() as progress:
                task = progress.add_task(
                    "creating students", total=sum(sizes.values()) + WARM_UP + 2 * students
                )
                for prefix, size in sizes.items():
                    for n in range(size):
                        issued = enrol_with_proven_contacts(svc, _student(n, prefix))
                        groups[prefix].append((issued.user_id, issued.code, n))
                        progress.advance(task)
                for n in range(WARM_UP + 2 * students):
                    floor_ids.append(
                        svc.keycloak.create_user(
                            f"f{n:05d}",
                            email=f"f{n:05d}@bench.example.edu",
                            first_name="Floor",
                            last_name=f"Student{n}",
                            attributes={"activation_state": ["pending"]},
                        )
                    )
                    progress.advance(task)
            svc.engine.dispose()

            # As deployed: `umpass serve`'s threads and pools; more students than threads
            # wait in gunicorn's queue, as they would behind a load balancer.
            service = serve_on_a_free_port(workdir / "service.log", env, threads=args.threads)
            base, service_pid = service.direct_url, service.pid or 0
            meters = _Meters(
                {
                    "keycloak": lambda: process_group(running.pid),
                    "service": lambda: process_tree(service_pid),
                    "database": database_pids,
                    "bench client": lambda: [os.getpid()],
                }
            )
            gateway = KeycloakGateway(dataclasses.replace(settings.keycloak, pool_size=concurrency))
            _run_closed("warm-up (not counted)", base, groups["w"], min(WARM_UP, concurrency))
            _run_floor("floor warm-up", gateway, floor_ids[:WARM_UP], min(WARM_UP, concurrency))

            # Ours, the floor, the floor, ours (ABBA): Keycloak keeps compiling and warming
            # for minutes, so whichever side ran second would look cheaper; each side runs
            # once early and once late, and the two runs are added up.
            calls_before = _admin_calls(base, metrics_token)
            service_cpu: dict[str, float] = {}
            floor_cpu: dict[str, float] = {}
            service_seconds = floor_seconds = 0.0
            saturated: dict[str, list[float]] = defaultdict(list)
            floor_latency: list[float] = []
            recording = Recording(service_pid, workdir / "py-spy.txt") if args.profile else None
            profile = None
            floor_runs = (floor_ids[WARM_UP : WARM_UP + students], floor_ids[WARM_UP + students :])
            for label, group in (
                ("ours (1 of 2)", groups["s"]),
                ("floor (1 of 2)", floor_runs[0]),
                ("floor (2 of 2)", floor_runs[1]),
                ("ours (2 of 2)", groups["t"]),
            ):
                cpu: dict[str, float] = {}
                if label.startswith("ours"):
                    with meters.phase(cpu):
                        seconds, per_step = _run_closed(label, base, group, concurrency)
                    if recording is not None:  # the first run of ours only
                        profile, recording = recording.stop(), None
                    service_seconds += seconds
                    for name, times in per_step.items():
                        saturated[name] += times
                    _add(service_cpu, cpu)
                else:
                    with meters.phase(cpu):
                        seconds, latencies = _run_floor(label, gateway, group, concurrency)
                    floor_seconds += seconds
                    floor_latency += latencies
                    _add(floor_cpu, cpu)
            calls = _admin_calls(base, metrics_token) - calls_before
            # Per process (gunicorn's master and its worker): what one process must fit in.
            service_rss = max(peak_rss_mb(pid) for pid in process_tree(service_pid))
            # Per run of `students`, as every figure below is.
            service_seconds, floor_seconds = service_seconds / 2, floor_seconds / 2
            service_cpu = {kind: value / 2 for kind, value in service_cpu.items()}
            floor_cpu = {kind: value / 2 for kind, value in floor_cpu.items()}
            calls = Counter({action: count // 2 for action, count in calls.items()})

            rate = args.rate or 0.6 * students / floor_seconds
            opened = _run_open(base, groups["o"], rate)
            framework_cpu = _run_framework_floor(
                "framework floor", env, workdir, students, concurrency, args.threads
            )
        finally:
            if service is not None:
                service.stop()

    _print_steps(students, saturated, opened, rate)
    _print_cpu(students, service_seconds, service_cpu, floor_cpu)
    _print_calls(students, calls)
    if profile is not None:
        _print_profile(students, profile, service_cpu["service"])
    ratio = service_seconds / floor_seconds
    service_ms = 1000 * service_cpu["service"] / students
    kc_ms = 1000 * service_cpu["keycloak"] / students
    floor_kc_ms = 1000 * floor_cpu["keycloak"] / students
    framework_ms = 1000 * framework_cpu / students
    print(
        f"service: {students / service_seconds:.2f} activations/s "
        f"({service_seconds:.1f} s for {students}); peak RSS {service_rss:.0f} MB per process"
    )
    print(
        f"floor:   {students / floor_seconds:.2f} activations/s ({floor_seconds:.1f} s); "
        f"one admin-API activation p50 {_percentile(floor_latency, 0.5) * 1000:.0f} ms, "
        f"p95 {_percentile(floor_latency, 0.95) * 1000:.0f} ms at the same concurrency"
    )
    print(
        f"framework floor: {framework_ms:.0f} ms CPU per activation for the libraries alone "
        f"(8 requests, a read each, a write per POST); the service's own work: "
        f"{service_ms - framework_ms:.0f} ms"
    )
    open_p95 = " ".join(
        f"p50_{n}_ms={_percentile(opened[n], 0.5) * 1000:.0f} "
        f"p95_{n}_ms={_percentile(opened[n], 0.95) * 1000:.0f}"
        for n in STEPS
    )
    print(
        f"RESULT activation_ratio={ratio:.2f} activations_per_s={students / service_seconds:.2f} "
        f"floor_per_s={students / floor_seconds:.2f} service_cpu_ms={service_ms:.0f} "
        f"kc_cpu_ms={kc_ms:.0f} floor_kc_cpu_ms={floor_kc_ms:.0f} "
        f"kc_cpu_ratio={kc_ms / floor_kc_ms:.2f} kc_calls={sum(calls.values()) / students:.1f} "
        f"framework_cpu_ms={framework_ms:.0f} "
        f"service_over_framework_ms={service_ms - framework_ms:.0f} "
        f"service_rss_mb={service_rss:.0f} rate_per_s={rate:.2f} {open_p95}"
    )
    return 0


def _bar(value: float, widest: float, width: int = 30) -> str:
    return "█" * max(1, round(width * value / widest)) if widest > 0 else ""


def _print_steps(
    students: int, saturated: dict[str, list[float]], opened: dict[str, list[float]], rate: float
) -> None:
    table = Table(
        "step",
        "saturated p50",
        "p95 ms",
        f"at {rate:.2f}/s p50",
        "p95 ms",
        "chart (p95 at that rate)",
        title=f"{students} students each run",
    )
    widest = max(_percentile(opened[n], 0.95) for n in STEPS)
    for name in STEPS:
        table.add_row(
            name,
            f"{_percentile(saturated[name], 0.5) * 1000:.0f}",
            f"{_percentile(saturated[name], 0.95) * 1000:.0f}",
            f"{_percentile(opened[name], 0.5) * 1000:.0f}",
            f"{_percentile(opened[name], 0.95) * 1000:.0f}",
            _bar(_percentile(opened[name], 0.95), widest),
        )
    console.print(table)


def _print_cpu(
    students: int, seconds: float, ours: dict[str, float], floor: dict[str, float]
) -> None:
    table = Table(
        "process",
        "CPU s",
        "ms per activation",
        "floor's ms",
        "chart",
        title=f"Where the CPU goes: {seconds:.1f} s wall on {os.cpu_count()} cores",
    )
    widest = max(max(ours.values()), max(floor.values()))
    for kind in ours:
        table.add_row(
            kind,
            f"{ours[kind]:.1f}",
            f"{1000 * ours[kind] / students:.0f}",
            f"{1000 * floor[kind] / students:.0f}",
            _bar(ours[kind], widest),
        )
    console.print(table)


def _print_calls(students: int, calls: Counter[str]) -> None:
    table = Table("admin call", "per activation", "what for", title="Keycloak admin-API calls")
    for action, count in calls.most_common():
        table.add_row(action, f"{count / students:.2f}", CALL_PURPOSE.get(action, ""))
    table.add_row("all", f"{sum(calls.values()) / students:.2f}", "the floor makes 1 (+1 read)")
    console.print(table)


def _print_profile(students: int, profile: Profile, measured_cpu: float) -> None:
    total = sum(profile.samples.values())
    table = Table(
        "cost",
        "ms per activation",
        "chart",
        title=(
            f"Service CPU by cost (py-spy, {total / profile.rate:.1f} s sampled, "
            f"{measured_cpu:.1f} s measured)"
        ),
    )
    widest = max(profile.samples.values(), default=0)
    for name, count in profile.samples.most_common():
        table.add_row(name, f"{profile.ms_per(count, students):.1f}", _bar(count, widest))
    console.print(table)
    top = Table("service function (innermost, inclusive)", "ms per activation")
    for name, count in profile.functions.most_common(12):
        top.add_row(name, f"{profile.ms_per(count, students):.1f}")
    console.print(top)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench activation")
    parser.add_argument("--students", type=int, default=50, help="per run (3 runs + warm-up)")
    parser.add_argument("--concurrency", type=int, default=50, help="of the saturation run")
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="open-loop arrivals per second (default: 60%% of the floor's)",
    )
    parser.add_argument("--threads", type=int, default=8, help="the service's (umpass serve)")
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--profile", action="store_true", help="py-spy over the saturation run")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
