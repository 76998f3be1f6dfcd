"""What the uniformity benchmarks share: their Keycloak, the shuffled order of attempts,
percentiles, the table per kind and the command line."""

from __future__ import annotations

import argparse
import os
import random
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

from rich.console import Console
from rich.table import Table

from devstack.bench_stack import BenchStack, bench_realm_on, bench_stack


def keycloak_for(
    url: str | None, console: Console, **limits: str
) -> AbstractContextManager[BenchStack]:
    """Keycloak started for the run, or the one at `url` (in a realm of its own)."""
    if url is None:
        console.print("[bold]starting Keycloak[/]")
        return bench_stack(**limits)
    return bench_realm_on(
        url, os.environ["KEYCLOAK_ADMIN_USER"], os.environ["KEYCLOAK_ADMIN_PASSWORD"], **limits
    )


def shuffled_rounds(cases: list[str], rounds: int, seed: int) -> Iterator[str]:
    """Every case once per round, in an order shuffled the same way every run."""
    shuffle = random.Random(seed)  # noqa: S311 - an order, not a secret
    for _ in range(rounds):
        order = list(cases)
        shuffle.shuffle(order)
        yield from order


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timing_table(title: str, ms: dict[str, list[float]]) -> Table:
    table = Table("kind", "n", "min ms", "p50 ms", "p95 ms", "max ms", title=title)
    for case, values in ms.items():
        table.add_row(
            case,
            str(len(values)),
            *(
                f"{x:.0f}"
                for x in (
                    min(values),
                    percentile(values, 0.5),
                    percentile(values, 0.95),
                    max(values),
                )
            ),
        )
    return table


def uniformity_main(
    prog: str, run: Callable[[int, str | None], int], argv: list[str] | None
) -> int:
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--rounds", type=int, default=30, help="attempts per kind")
    parser.add_argument("--keycloak", help="use this Keycloak instead of starting one")
    args = parser.parse_args(argv)
    return run(args.rounds, args.keycloak)
