"""Benchmark: N students activate concurrently over HTTP, against a floor.

    scripts/bench activation [--students 50] [--concurrency 50]

Starts its own Keycloak (test instance, free ports) with the realm's PRODUCTION password
hashing, and the service as a real `umpass serve` process. Then:

* service: N students walk the whole flow over HTTP (identify, policies, contacts,
  password), `--concurrency` at a time;
* floor: N other pending students reach the same end state (permanent password,
  active, accepted policies) by one admin-API call each, same concurrency, no web flow.

Prints activations per second, p50/p95 per step, the service's peak RSS, a chart, and
last `RESULT activation_ratio=<service s per activation / floor s per activation> ...`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import requests
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from devstack.background import Background, serve_on_a_free_port
from devstack.bench_stack import (
    bench_stack,
    enrol_with_proven_contacts,
    peak_rss_mb,
    process_group,
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
PASSWORD = "lantern {n} orbit velvet meadow"  # noqa: S105 - a benchmark passphrase
DOB = date(2006, 6, 6)


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
    """One student's flow; seconds per step (GET + POST of the step)."""
    s = requests.Session()
    times: dict[str, float] = {}

    def step(name: str, data: dict[str, str]) -> None:
        started = time.perf_counter()
        page = s.get(f"{base}/activate/{name}", timeout=120)
        token = _CSRF.search(page.text)
        if not token:
            raise RuntimeError(f"{name}: no form (HTTP {page.status_code})")
        done = s.post(
            f"{base}/activate/{name}",
            data={"csrf_token": token.group(1), **data},
            allow_redirects=False,
            timeout=120,
        )
        if done.status_code != 302:
            raise RuntimeError(f"{name}: HTTP {done.status_code}")
        times[name] = time.perf_counter() - started

    step(
        "identify",
        {
            "user_id": user_id,
            "activation_code": code,
            **form_fields(DOB),
            "id_last4": f"{n:07d}"[-4:],
        },
    )
    policies = s.get(f"{base}/activate/policies", timeout=120).text
    boxes = set(re.findall(r'name="(accept_[a-z0-9_]+)"', policies))
    step("policies", {b: "y" for b in boxes})
    step("contacts", {"action": "choose", "email_choice": "keep", "phone_choice": "keep"})
    password = PASSWORD.format(n=n)
    step("password", {"password": password, "confirm": password})
    return times


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time used so far by these processes and their threads."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def run(students: int, concurrency: int, processes: int = 1) -> int:
    console.print("[bold]starting Keycloak[/] (production hashing)")
    services: list[Background] = []
    # All students share 127.0.0.1: the per-address identify limit would stop them.
    with bench_stack(UMPASS_IDENTIFY_LIMIT="100000 per minute") as stack:
        running, env, workdir = stack.keycloak, stack.env, stack.workdir
        try:
            # Production hashing: no fast_hash.
            apply_realm(ApplyOptions.from_env(env, theme=True, with_demo=True))
            settings = load_settings(env)
            svc = Services.assemble(settings)
            migrate.upgrade(svc.engine)

            codes: list[tuple[str, str, int]] = []
            floor_ids: list[str] = []
            with _progress() as progress:
                task = progress.add_task("creating students", total=2 * students)
                for n in range(students):
                    student = _student(n, "s")
                    issued = enrol_with_proven_contacts(svc, student)
                    codes.append((issued.user_id, issued.code, n))
                    progress.advance(task)
                for n in range(students):
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

            for index in range(processes):
                services.append(
                    serve_on_a_free_port(
                        workdir / f"service-{index}.log",
                        {**env, "UMPASS_KC_POOL_SIZE": str(max(4, concurrency // 4))},
                        threads=max(8, concurrency // processes),
                        name=f"service {index + 1}",
                    )
                )
            bases = [part.direct_url for part in services]

            per_step: dict[str, list[float]] = defaultdict(list)
            kc_pids = process_group(running.pid)
            service_pids = [part.pid for part in services if part.pid is not None]
            cpu_before = {
                "keycloak": _cpu_seconds(kc_pids),
                "service": _cpu_seconds(service_pids),
                "bench client": _cpu_seconds([os.getpid()]),
            }
            with _progress() as progress, ThreadPoolExecutor(max_workers=concurrency) as pool:
                task = progress.add_task("students activating (web)", total=students)
                started = time.perf_counter()
                # Flows live in the shared database: any process serves any request, as
                # behind a load balancer without affinity; students are spread round-robin.
                futures = [pool.submit(_walk, bases[n % len(bases)], u, c, n) for u, c, n in codes]
                for future in futures:
                    for name, seconds in future.result().items():
                        per_step[name].append(seconds)
                    progress.advance(task)
                service_seconds = time.perf_counter() - started
            cpu_used = {
                "keycloak": _cpu_seconds(kc_pids) - cpu_before["keycloak"],
                "service": _cpu_seconds(service_pids) - cpu_before["service"],
                "bench client": _cpu_seconds([os.getpid()]) - cpu_before["bench client"],
            }
            service_rss = sum(peak_rss_mb(pid) for pid in service_pids)

            gateway = KeycloakGateway(dataclasses.replace(settings.keycloak, pool_size=concurrency))
            accepted = {ACCEPTED_POLICIES: ["it-acceptable-use@2026-09:2026-11-26T00:00:00Z"]}
            with _progress() as progress, ThreadPoolExecutor(max_workers=concurrency) as pool:
                task = progress.add_task("floor: admin API directly", total=students)
                started = time.perf_counter()

                def floor_one(index: int, uid: str) -> float:
                    began = time.perf_counter()
                    if not gateway.activate(uid, PASSWORD.format(n=index), attributes=accepted):
                        raise RuntimeError("floor activation wrote nothing")
                    return time.perf_counter() - began

                futures = [pool.submit(floor_one, i, uid) for i, uid in enumerate(floor_ids)]
                floor_latency = []
                for future in futures:
                    floor_latency.append(future.result())
                    progress.advance(task)
                floor_seconds = time.perf_counter() - started
        finally:
            for part in services:
                part.stop()

    table = Table("step", "p50 ms", "p95 ms", "chart (p95)", title=f"{students} students")
    widest = max(_percentile(v, 0.95) for v in per_step.values())
    for name in ("identify", "policies", "contacts", "password"):
        values = per_step[name]
        p50, p95 = _percentile(values, 0.5) * 1000, _percentile(values, 0.95) * 1000
        bar = "█" * max(1, int(40 * (p95 / 1000) / widest))
        table.add_row(name, f"{p50:.0f}", f"{p95:.0f}", bar)
    console.print(table)
    where = Table(
        "process",
        "CPU s",
        "ms per activation",
        "share",
        title=f"Where the time goes: {service_seconds:.1f} s wall on {os.cpu_count()} cores",
    )
    total_cpu = sum(cpu_used.values()) or 1.0
    for name, seconds in cpu_used.items():
        where.add_row(
            name,
            f"{seconds:.1f}",
            f"{1000 * seconds / students:.0f}",
            "█" * int(30 * seconds / total_cpu),
        )
    console.print(where)
    ratio = (service_seconds / students) / (floor_seconds / students)
    print(
        f"service: {students / service_seconds:.2f} activations/s "
        f"({service_seconds:.1f} s for {students}); peak RSS {service_rss:.0f} MB"
    )
    print(
        f"floor:   {students / floor_seconds:.2f} activations/s ({floor_seconds:.1f} s); "
        f"one admin-API activation p50 {_percentile(floor_latency, 0.5) * 1000:.0f} ms, "
        f"p95 {_percentile(floor_latency, 0.95) * 1000:.0f} ms at the same concurrency"
    )
    p95 = {n: _percentile(v, 0.95) * 1000 for n, v in per_step.items()}
    p95_text = " ".join(f"p95_{n}_ms={v:.0f}" for n, v in p95.items())
    print(
        f"RESULT activation_ratio={ratio:.2f} activations_per_s={students / service_seconds:.2f} "
        f"floor_per_s={students / floor_seconds:.2f} service_rss_mb={service_rss:.0f} {p95_text}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench activation")
    parser.add_argument("--students", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--processes", type=int, default=1, help="service processes")
    args = parser.parse_args(argv)
    return run(args.students, args.concurrency, args.processes)


if __name__ == "__main__":
    sys.exit(main())
