"""Benchmark: students activating at once through the production-like topology.

    scripts/bench load [--students 200]

Starts the topology (scripts/devstack/stack.py: nginx with TLS, two service replicas
under gunicorn, two clustered Keycloak nodes on PostgreSQL, Redis) with the realm's
PRODUCTION password hashing. Then, on the same stack:

* two replicas behind nginx: N students walk the whole flow over HTTPS at once, each from
  a loopback address of its own (as on a campus: the per-address limits see N addresses);
* one replica behind nginx (the other taken out of nginx by a graceful reload): N other
  students, the same way — the baseline.

Four runs of N, in the order two, one, one, two replicas (so drift weighs on both alike),
after a warm-up of 40 students that is not measured; each replica runs `--workers` gunicorn
workers (default 1: on one small machine more processes only fight over the same cores).

Prints throughput, p50/p95 per step, errors by status, peak RSS per replica, and last
`RESULT load students=N http_5xx=… activated_exactly_once=… per_s_2=… per_s_1=… …`
(activated_exactly_once: the fewest of any run, each run having N students).
Contacts are on record and proven already: code delivery is not what this measures.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from devstack.bench_stack import enrol_with_proven_contacts, peak_rss_mb, process_group
from devstack.stack import Stack
from devstack.student_walk import StepFailed, Student, StudentBrowser
from provider.config import load_settings
from provider.progress import progress_bar
from provider.proofing import normalize_id_last4
from provider.services import Services
from provider.storage.models import ActivationCode, AuditEvent
from provider.students import NewStudent

console = Console(stderr=True)
PASSWORD = "lantern {n} orbit velvet meadow"  # noqa: S105 - a benchmark passphrase
DOB = date(2006, 6, 6)
STEPS = ("identify", "policies", "contacts", "password")
WARM_UP = 40


@dataclass
class Run:
    label: str
    seconds: float = 0.0
    per_step: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter[int] = field(default_factory=Counter)
    finished: int = 0

    @property
    def per_s(self) -> float:
        return self.finished / self.seconds if self.seconds else 0.0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values) or [0.0]
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _enrol(svc: Services, prefix: str, count: int) -> list[Student]:
    def one(n: int) -> Student:
        id_number = f"B{n:07d}"
        new = NewStudent(
            f"{prefix}{n:05d}",
            "Bench",
            f"Student{n}",
            f"{prefix}{n:05d}@bench.example.edu",
            "+85362000000",
            DOB,
            id_number,
        )
        issued = enrol_with_proven_contacts(svc, new)
        last4 = normalize_id_last4(id_number) or ""
        return Student(issued.user_id, issued.code, DOB, last4, new.email, new.phone)

    with progress_bar(console=console) as progress, ThreadPoolExecutor(8) as pool:
        task = progress.add_task(f"enrolling {prefix}…", total=count)
        students = []
        for student in pool.map(one, range(count)):
            students.append(student)
            progress.advance(task)
    return students


def _walk(stack: Stack, who: Student, source: str, n: int, run: Run) -> None:
    browser = StudentBrowser(stack.service_url, stack.ca_file, source)
    try:
        browser.activate(who, PASSWORD.format(n=n))
    except StepFailed as failed:
        run.statuses[failed.status] += 1
        return
    run.statuses[200] += 1
    run.finished += 1
    for step in STEPS:
        run.per_step[step].append(browser.timings[step])


def _run(stack: Stack, students: list[Student], label: str, first_address: int) -> Run:
    run = Run(label)
    addresses = (f"127.1.{a}.{b}" for a, b in itertools.product(range(256), range(2, 250)))
    sources = list(itertools.islice(addresses, first_address, first_address + len(students)))
    with (
        progress_bar(console=console) as progress,
        ThreadPoolExecutor(max_workers=len(students)) as pool,
    ):
        task = progress.add_task(label, total=len(students))
        started = time.perf_counter()
        futures = [
            pool.submit(_walk, stack, who, sources[n], n, run) for n, who in enumerate(students)
        ]
        for future in futures:
            future.result()
            progress.advance(task)
        run.seconds = time.perf_counter() - started
    return run


def _replica_rss(stack: Stack) -> list[float]:
    """Each replica's peak RSS: its gunicorn master and workers together."""
    return [
        sum(peak_rss_mb(pid) for pid in process_group(replica.pid))
        for replica in stack.replicas
        if replica.pid
    ]


def _activated_exactly_once(svc: Services, students: list[Student]) -> int:
    wanted = {s.user_id for s in students}
    with svc.reads() as session:
        events = dict(
            session.execute(
                select(AuditEvent.subject, func.count())
                .where(AuditEvent.action == "account.activated")
                .where(AuditEvent.subject.in_(wanted))
                .group_by(AuditEvent.subject)
            ).all()
        )
        used = dict(
            session.execute(
                select(ActivationCode.user_id, func.count())
                .where(ActivationCode.used_at.is_not(None))
                .where(ActivationCode.user_id.in_(wanted))
                .group_by(ActivationCode.user_id)
            ).all()
        )
    once = 0
    for who in students:
        user = svc.keycloak.find_user(who.user_id)
        if (
            user is not None
            and user.activation_state == "active"
            and events.get(who.user_id) == 1
            and used.get(who.user_id) == 1
        ):
            once += 1
    return once


def _report(runs: list[Run], rss_two: list[float], rss_end: list[float]) -> None:
    table = Table(
        "step", *(f"{r.label} p50 ms" for r in runs), *(f"{r.label} p95 ms" for r in runs)
    )
    for step in STEPS:
        p50 = [f"{_percentile(r.per_step[step], 0.5) * 1000:.0f}" for r in runs]
        p95 = [f"{_percentile(r.per_step[step], 0.95) * 1000:.0f}" for r in runs]
        table.add_row(step, *p50, *p95)
    console.print(table)
    chart = Table("run", "activations/s", "", "statuses", title="Throughput")
    best = max(r.per_s for r in runs) or 1.0
    for r in runs:
        statuses = " ".join(f"{code}:{n}" for code, n in sorted(r.statuses.items()))
        chart.add_row(r.label, f"{r.per_s:.2f}", "█" * int(40 * r.per_s / best), statuses)
    console.print(chart)
    console.print(
        f"peak RSS per replica: two-replica run {', '.join(f'{m:.0f} MB' for m in rss_two)}; "
        f"after all runs {', '.join(f'{m:.0f} MB' for m in rss_end)}"
    )


# Two-replica and one-replica runs in the order A B B A: drift on a shared machine (and
# Keycloak's JIT warming) weighs on both sides alike.
ORDER = (2, 1, 1, 2)


def _merge(label: str, runs: list[Run]) -> Run:
    merged = Run(label)
    for r in runs:
        merged.seconds += r.seconds
        merged.finished += r.finished
        merged.statuses.update(r.statuses)
        for step, values in r.per_step.items():
            merged.per_step[step].extend(values)
    return merged


def run(count: int, workers: int) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="umpass-bench-load-"))
    workdir.chmod(0o711)  # PostgreSQL runs as `postgres` and must pass through
    console.print("[bold]starting the topology[/] (production hashing)")
    with Stack.up(workdir / "stack", fast_hash=False, workers=workers, console=console) as stack:
        console.print(f"topology up in {stack.timings.get('total', 0):.0f} s")
        # Enrolling goes through the stack's Keycloak over HTTPS: trust its CA, as replicas do.
        os.environ["REQUESTS_CA_BUNDLE"] = str(stack.ca_file)
        svc = Services.assemble(load_settings(stack.env))
        warm = _enrol(svc, "lw", WARM_UP)
        cohorts = [_enrol(svc, f"l{i}", count) for i in range(len(ORDER))]
        _run(stack, warm, "warm-up (not measured)", len(ORDER) * count)
        by_replicas: dict[int, list[Run]] = {1: [], 2: []}
        once: list[int] = []
        rss_two: list[float] = []
        for i, (replicas, students) in enumerate(zip(ORDER, cohorts, strict=True)):
            stack.use_replicas(replicas)
            by_replicas[replicas].append(
                _run(stack, students, f"{replicas} replica(s), run {i + 1}", i * count)
            )
            if replicas == 2:
                rss_two = _replica_rss(stack)
            once.append(_activated_exactly_once(svc, students))
        rss_after = _replica_rss(stack)
    two, one = _merge("2 replicas", by_replicas[2]), _merge("1 replica", by_replicas[1])
    _report([two, one], rss_two, rss_after)
    runs = [*by_replicas[2], *by_replicas[1]]
    http_5xx = sum(n for r in runs for code, n in r.statuses.items() if code >= 500)
    other = sum(n for r in runs for code, n in r.statuses.items() if code != 200)
    p95 = " ".join(
        f"p95_{step}_ms={_percentile(two.per_step[step], 0.95) * 1000:.0f}" for step in STEPS
    )
    print(
        f"RESULT load students={count} runs={len(ORDER)} http_5xx={http_5xx} errors={other} "
        f"activated_exactly_once={min(once)} per_s_2={two.per_s:.2f} per_s_1={one.per_s:.2f} "
        f"ratio_2_over_1={two.per_s / (one.per_s or 1):.2f} workers_per_replica={workers} "
        f"rss_mb_per_replica={max(rss_two, default=0):.0f} {p95}"
    )
    return 0 if http_5xx == 0 and min(once) == count else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench load")
    parser.add_argument("--students", type=int, default=200, help="at once, per run")
    # One gunicorn worker per replica: on one 2-core machine, two replicas of two workers
    # each would only measure four processes fighting over the same two cores.
    parser.add_argument("--workers", type=int, default=1, help="gunicorn workers per replica")
    args = parser.parse_args(argv)
    return run(args.students, args.workers)


if __name__ == "__main__":
    sys.exit(main())
