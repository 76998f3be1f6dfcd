"""Benchmark: import a generated intake of N students (with codes) against a floor.

    scripts/bench provisioning [--students 10000[,50000,...]] [--sequential-floor]

For each size and each side, starts a Keycloak of its own (test instance, free ports,
fresh), applies the realm (its user profile, group and events: what `apply` leaves), and
after a warm-up of 300 students through that side:

* floor: Keycloak's bare partial import of the same N users (other usernames) into the
  realm, in the same batches, straight from this process: no validation, no hashes, no
  codes; as many batches at once as ours sends (and, with `--sequential-floor`, also
  one at a time; the ratio is taken against the faster);
* ours:  `umpass import-intake --csv … --codes-out …` as a real process: validation of
  every row, the realm's check, the partial import, proofing hashes and a code per
  student written to the CSV. Its peak RSS is that process's own (VmHWM, read while
  it runs), its CPU seconds from wait4.

Prints, per size, seconds, students per second and a chart; then a table of the sizes
(ours, floor, ratio, the import process's own CPU seconds, peak RSS, RSS per 1000
students and the growth from the size before) with a chart, and last
`RESULT provisioning_ratio=<worst ours / floor> ratio_<N>=… rss_<N>_mb=… …`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from keycloak import KeycloakAdmin, KeycloakOpenIDConnection
from rich.console import Console
from rich.progress import Progress, TaskID
from rich.table import Table

from devstack.bench_stack import BenchStack, bench_stack, peak_rss_mb, process_group
from keycloak_config.apply import ApplyOptions, apply_realm
from provider.config import load_settings
from provider.intake.provision import BATCH_SIZE, PARALLEL_BATCHES, user_representation
from provider.intake.records import IntakeRecord
from provider.progress import progress_bar
from provider.services import Services
from provider.storage import migrate

console = Console(stderr=True)
WARM_UP = 300  # students through each side before it is measured (Keycloak's JIT)
HEADER = (
    "Student Number,Given Name,Family Name,Email,Mobile,Date of Birth,ID Number,Programme,Language"
)


def _rows(count: int, prefix: str) -> list[dict[str, str]]:
    languages = ("en", "zh_Hant", "pt")
    born = date(2005, 1, 1)
    return [
        {
            "user_id": f"{prefix}{n:06d}",
            "first": f"Given{n}",
            "last": f"Family{n}",
            "email": f"{prefix}{n:06d}@bench.example.edu",
            # Macau mobiles: 62, 63, 65 and 66 followed by six digits.
            "phone": f"+853{(62, 63, 65, 66)[n % 4]}{n % 1_000_000:06d}",
            "dob": (born + timedelta(days=n % 3000)).isoformat(),
            "id": f"A{n:07d}",
            "language": languages[n % 3],
        }
        for n in range(count)
    ]


def _record(row: dict[str, str]) -> IntakeRecord:
    return IntakeRecord(
        where="",
        user_id=row["user_id"],
        first_name=row["first"],
        last_name=row["last"],
        email=row["email"],
        phone=row["phone"],
        date_of_birth=date.fromisoformat(row["dob"]),
        id_number=row["id"],
        language=row["language"],
    )


def _csv(rows: list[dict[str, str]], path: Path) -> None:
    lines = [HEADER] + [
        f"{r['user_id']}01,{r['first']},{r['last']},{r['email']},{r['phone']},{r['dob']},"
        f"{r['id']},BSc,{r['language']}"
        for r in rows
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _bare_import(
    admins: list[KeycloakAdmin],
    realm: str,
    rows: list[dict[str, str]],
    progress: Progress,
    task: TaskID,
) -> None:
    """Keycloak's partial import alone, in batches, `len(admins)` requests at a time."""

    def one(index: int, batch: list[dict[str, str]]) -> int:
        # Exactly the accounts ours sends: only the work around them differs.
        users = [user_representation(_record(r)) for r in batch]
        response = admins[index % len(admins)].connection.raw_post(
            f"admin/realms/{realm}/partialImport",
            data=json.dumps({"ifResourceExists": "SKIP", "users": users}),
        )
        if response.status_code >= 300:
            raise RuntimeError(f"partial import refused: {response.text[:200]}")
        return len(batch)

    batches = [rows[i : i + BATCH_SIZE] for i in range(0, len(rows), BATCH_SIZE)]
    # Each worker thread uses its own admin client (python-keycloak is not thread-safe).
    with ThreadPoolExecutor(max_workers=len(admins)) as pool:
        futures = [pool.submit(one, n % len(admins), batch) for n, batch in enumerate(batches)]
        for future in futures:
            progress.advance(task, future.result())


@dataclass(frozen=True)
class Measured:
    students: int
    floors: dict[str, float]
    ours_seconds: float
    ours_cpu_seconds: float  # the import process's own CPU (user + system)
    ours_rss_mb: float
    codes: int
    keycloak_rss_mb: float

    @property
    def floor_seconds(self) -> float:
        return min(self.floors.values())

    @property
    def ratio(self) -> float:
        return self.ours_seconds / self.floor_seconds


def _run_measured(
    args: list[str], env: dict[str, str], workdir: Path
) -> tuple[int, str, float, float]:
    """Run a command to its end: exit code, stderr, its CPU seconds (wait4) and its own peak
    RSS in MB. The peak is read from /proc while it runs (VmHWM, which only grows): the
    ru_maxrss that wait4 or RUSAGE_CHILDREN report starts from this process's own peak
    (Linux keeps the high-water mark of the memory the child was spawned from), so it
    would measure the benchmark's generated rows, not the import."""
    out, err = workdir / "ours.out", workdir / "ours.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(args, env=env, stdout=stdout, stderr=stderr)
        peak = 0.0
        done = threading.Event()

        def watch() -> None:
            nonlocal peak
            while not done.wait(0.05):
                with suppress(OSError):
                    peak = max(peak, peak_rss_mb(process.pid))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        _, status, usage = os.wait4(process.pid, 0)
        done.set()
        watcher.join()
        process.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return process.returncode, err.read_text(encoding="utf-8"), cpu, peak


@contextmanager
def _fresh_realm(label: str) -> Iterator[tuple[BenchStack, list[KeycloakAdmin]]]:
    """A Keycloak of its own with the realm applied (as `apply` leaves it: the user
    profile, the students group, events), and admin clients for the parallel batches."""
    console.print(f"[bold]{label}: starting Keycloak[/]")
    with bench_stack(COLUMNS="100") as stack:
        apply_realm(ApplyOptions.from_env(stack.env, theme=True, with_demo=True))
        admins = [
            KeycloakAdmin(
                connection=KeycloakOpenIDConnection(
                    server_url=stack.keycloak.url + "/",
                    username="admin",
                    password=stack.admin_password,
                    realm_name="master",
                    user_realm_name="master",
                    client_id="admin-cli",
                    timeout=300,
                )
            )
            for _ in range(PARALLEL_BATCHES)
        ]
        yield stack, admins


def _floors(students: int, sequential_floor: bool) -> dict[str, float]:
    """The bare partial import into the same realm as ours, on a Keycloak as fresh."""
    with _fresh_realm(f"{students} students, floor") as (stack, admins):
        realm = stack.env["UMPASS_REALM"]
        with progress_bar(console=console, transient=False, label_width=24) as progress:
            task = progress.add_task("floor: warm-up", total=WARM_UP)
            _bare_import(admins, realm, _rows(WARM_UP, "w"), progress, task)
            floors: dict[str, float] = {}
            kinds = [(f"floor: {len(admins)} at once", "g", admins)]
            if sequential_floor:
                kinds.insert(0, ("floor: sequential", "f", admins[:1]))
            for name, prefix, clients in kinds:
                task = progress.add_task(name, total=students)
                started = time.perf_counter()
                _bare_import(clients, realm, _rows(students, prefix), progress, task)
                floors[name] = time.perf_counter() - started
    return floors


def measure(students: int, sequential_floor: bool) -> Measured:
    # Each side on a Keycloak of its own, started fresh, with the realm as `apply` leaves
    # it: the floor's accounts keep the attributes ours keep (the user profile declares
    # them), and neither side imports into tables the other has filled.
    floors = _floors(students, sequential_floor)
    with _fresh_realm(f"{students} students, ours") as (stack, _):
        running, env, workdir = stack.keycloak, stack.env, stack.workdir
        migrate.upgrade(Services.assemble(load_settings(env)).engine)
        ours_csv, warm_csv = workdir / "intake.csv", workdir / "warmup.csv"
        _csv(_rows(students, "s"), ours_csv)
        _csv(_rows(WARM_UP, "w"), warm_csv)
        umpass = [sys.executable, "-m", "provider.cli"]

        console.print(f"warming up ({WARM_UP} students through the real command)")
        warm_exit, warm_err, _, _ = _run_measured(
            [*umpass, "import-intake", "--intake", "warmup", "--csv", str(warm_csv)], env, workdir
        )
        if warm_exit:
            raise RuntimeError(warm_err)

        with progress_bar(console=console, transient=False, label_width=24) as progress:
            task = progress.add_task("ours: import-intake", total=None)
            started = time.perf_counter()
            ours_exit, ours_err, ours_cpu, ours_rss = _run_measured(
                [
                    *umpass,
                    "import-intake",
                    "--intake",
                    "bench",
                    "--csv",
                    str(ours_csv),
                    "--codes-out",
                    str(workdir / "codes.csv"),
                ],
                env,
                workdir,
            )
            ours_seconds = time.perf_counter() - started
            progress.update(task, total=1, completed=1)
        if ours_exit:
            raise RuntimeError(ours_err)
        with (workdir / "codes.csv").open() as codes_file:
            codes = sum(1 for _ in codes_file) - 1
        keycloak_rss = max(peak_rss_mb(pid) for pid in process_group(running.pid))

    console.print(ours_err.strip().splitlines()[-2:])
    measured = Measured(students, floors, ours_seconds, ours_cpu, ours_rss, codes, keycloak_rss)
    table = Table("run", "seconds", "students/s", "chart", title=f"{students} students")
    runs = {**floors, "ours: import-intake (+ codes)": ours_seconds}
    widest = max(runs.values())
    for name, seconds in runs.items():
        table.add_row(
            name, f"{seconds:.1f}", f"{students / seconds:.0f}", "█" * int(40 * seconds / widest)
        )
    console.print(table)
    print(
        f"{students}: ours {ours_seconds:.1f} s ({students / ours_seconds:.0f} students/s, "
        f"{ours_cpu:.1f} s of CPU, {codes} codes, peak RSS {ours_rss:.0f} MB); "
        f"floor {measured.floor_seconds:.1f} s "
        f"(the faster of {', '.join(f'{s:.1f} s' for s in floors.values())}); "
        f"ratio {measured.ratio:.2f}; Keycloak peak RSS {keycloak_rss:.0f} MB",
        flush=True,
    )
    return measured


def report(results: list[Measured]) -> None:
    table = Table(
        "students",
        "ours s",
        "floor s",
        "ratio",
        "ours CPU s",
        "peak RSS MB",
        "MB / 1000",
        "KB / student more",
        title="provisioning by size (RSS: the import process; KB: growth from the size before)",
    )
    before: Measured | None = None
    for r in results:
        growth = (
            f"{(r.ours_rss_mb - before.ours_rss_mb) * 1024 / (r.students - before.students):.2f}"
            if before is not None and r.students != before.students
            else "–"
        )
        table.add_row(
            str(r.students),
            f"{r.ours_seconds:.1f}",
            f"{r.floor_seconds:.1f}",
            f"{r.ratio:.2f}",
            f"{r.ours_cpu_seconds:.1f}",
            f"{r.ours_rss_mb:.0f}",
            f"{r.ours_rss_mb * 1000 / r.students:.2f}",
            growth,
        )
        before = r
    console.print(table)
    widest = max(max(r.ours_seconds, r.floor_seconds) for r in results)
    for r in results:
        for name, seconds in (("ours", r.ours_seconds), ("floor", r.floor_seconds)):
            bar = "█" * max(1, int(50 * seconds / widest))
            console.print(
                f"{r.students if name == 'ours' else '':>7} {name:<5} {bar} {seconds:.1f} s"
            )
    per_size = " ".join(
        f"ratio_{r.students}={r.ratio:.2f} seconds_{r.students}={r.ours_seconds:.1f} "
        f"floor_{r.students}={r.floor_seconds:.1f} cpu_{r.students}={r.ours_cpu_seconds:.1f} "
        f"rss_{r.students}_mb={r.ours_rss_mb:.0f}"
        for r in results
    )
    print(f"RESULT provisioning_ratio={max(r.ratio for r in results):.2f} {per_size}", flush=True)


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not sizes like 10000,50000") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("sizes are whole numbers of students, at least 1")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench provisioning")
    parser.add_argument(
        "--students", type=_sizes, default=[10_000], help="one size or several: 10000,50000"
    )
    parser.add_argument(
        "--sequential-floor",
        action="store_true",
        help="also measure the floor one batch at a time (the ratio takes the faster)",
    )
    args = parser.parse_args(argv)
    report([measure(size, args.sequential_floor) for size in args.students])
    return 0


if __name__ == "__main__":
    sys.exit(main())
