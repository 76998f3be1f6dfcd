"""Benchmark: import a generated intake of N students (with codes) against a floor.

    scripts/bench provisioning [--students 10000]

Starts its own Keycloak (test instance, free ports), applies the realm, writes a Registry
CSV of N generated students, then, after a small warm-up import:

* floor: Keycloak's bare partial import of the same N users (other usernames, in a
  realm of their own), in the same batches, straight from this process: no
  validation, no hashes, no codes; once with one batch at a time and once with as
  many at once as ours sends (the ratio is taken against the faster);
* ours:  `umpass import-intake --csv … --codes-out …` as a real process: validation of
  every row, the partial import, proofing hashes and a code per student.

Prints seconds, students per second, peak RSS, a chart, and last
`RESULT provisioning_ratio=<ours / floor> seconds=<ours> …`.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path

from keycloak import KeycloakAdmin, KeycloakOpenIDConnection
from rich.console import Console
from rich.progress import Progress, TaskID
from rich.table import Table

from devstack.bench_stack import bench_stack, peak_rss_mb, process_group
from keycloak_config.apply import ApplyOptions, apply_realm
from provider.config import load_settings
from provider.keycloak import STUDENTS_GROUP
from provider.intake.provision import BATCH_SIZE, PARALLEL_BATCHES, user_representation
from provider.intake.records import IntakeRecord
from provider.progress import progress_bar
from provider.services import Services
from provider.storage import migrate

console = Console(stderr=True)
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


def run(students: int) -> int:
    console.print("[bold]starting Keycloak[/]")
    with bench_stack(COLUMNS="100") as stack:
        running, env, workdir = stack.keycloak, stack.env, stack.workdir
        admin_password = stack.admin_password
        apply_realm(ApplyOptions.from_env(env, theme=True, with_demo=True))
        migrate.upgrade(Services.assemble(load_settings(env)).engine)
        admins = [
            KeycloakAdmin(
                connection=KeycloakOpenIDConnection(
                    server_url=running.url + "/",
                    username="admin",
                    password=admin_password,
                    realm_name="master",
                    user_realm_name="master",
                    client_id="admin-cli",
                    timeout=300,
                )
            )
            for _ in range(PARALLEL_BATCHES)
        ]
        # The floors import into a realm of their own, so ours starts from a realm as
        # small as theirs (the import first reads which accounts exist).
        floor_realm = "umpass-bench-floor"
        admins[0].create_realm({"realm": floor_realm, "enabled": True}, skip_exists=True)
        # The accounts ours sends join the students group: the floor's realm needs it too.
        admins[0].change_current_realm(floor_realm)
        admins[0].create_group({"name": STUDENTS_GROUP}, skip_exists=True)
        admins[0].change_current_realm("master")
        ours_csv, warm_csv = workdir / "intake.csv", workdir / "warmup.csv"
        _csv(_rows(students, "s"), ours_csv)
        _csv(_rows(300, "w"), warm_csv)

        def umpass(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "provider.cli", *args],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )

        console.print("warming up (300 students through the real command)")
        warm = umpass("import-intake", "--intake", "warmup", "--csv", str(warm_csv))
        if warm.returncode:
            raise RuntimeError(warm.stderr)

        with progress_bar(console=console, transient=False, label_width=24) as progress:
            # Two floors: batches one after another, and as many at once as ours sends.
            # The ratio is taken against the faster one.
            floors: dict[str, float] = {}
            for name, prefix, clients in (
                ("floor: sequential", "f", admins[:1]),
                (f"floor: {len(admins)} at once", "g", admins),
            ):
                task = progress.add_task(name, total=students)
                started = time.perf_counter()
                _bare_import(clients, floor_realm, _rows(students, prefix), progress, task)
                floors[name] = time.perf_counter() - started
            floor_seconds = min(floors.values())
            task = progress.add_task("ours: import-intake", total=None)
            started = time.perf_counter()
            ours = umpass(
                "import-intake",
                "--intake",
                "bench",
                "--csv",
                str(ours_csv),
                "--codes-out",
                str(workdir / "codes.csv"),
            )
            ours_seconds = time.perf_counter() - started
            progress.update(task, total=1, completed=1)
        if ours.returncode:
            raise RuntimeError(ours.stderr)
        ours_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        codes = sum(1 for _ in (workdir / "codes.csv").open()) - 1
        keycloak_rss = max(peak_rss_mb(pid) for pid in process_group(running.pid))

    console.print(ours.stderr.strip().splitlines()[-2:])
    table = Table("run", "seconds", "students/s", "chart", title=f"{students} students")
    runs = {**floors, "ours: import-intake (+ codes)": ours_seconds}
    widest = max(runs.values())
    for name, seconds in runs.items():
        table.add_row(
            name, f"{seconds:.1f}", f"{students / seconds:.0f}", "█" * int(40 * seconds / widest)
        )
    console.print(table)
    print(
        f"ours:  {ours_seconds:.1f} s, {students / ours_seconds:.0f} students/s, "
        f"{codes} codes, peak RSS {ours_rss:.0f} MB"
    )
    print(
        f"floor: {floor_seconds:.1f} s, {students / floor_seconds:.0f} students/s (the faster "
        f"of {', '.join(f'{s:.1f} s' for s in floors.values())}); "
        f"Keycloak peak RSS {keycloak_rss:.0f} MB"
    )
    print(
        f"RESULT provisioning_ratio={ours_seconds / floor_seconds:.2f} seconds={ours_seconds:.1f} "
        f"floor_seconds={floor_seconds:.1f} students={students} codes={codes} "
        f"peak_rss_mb={ours_rss:.0f}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench provisioning")
    parser.add_argument("--students", type=int, default=10_000)
    args = parser.parse_args(argv)
    return run(args.students)


if __name__ == "__main__":
    sys.exit(main())
