"""Reads what `mutmut run` left under mutants/ (scripts/mutants) and writes the report:
per module how many mutants the tests killed, every survivor with its change, and for
each survivor either the argument for it (scripts/mutants_argued.toml: why it is
equivalent, or which PostgreSQL test kills what SQLite cannot tell apart) or
UNEXPLAINED. Prints one line per module and a closing RESULT line.

A mutant no test reaches ("no tests") counts as a survivor: nothing would notice it.
A timeout counts as killed (the tests noticed: they hung instead of passing).

An argued mutant is matched by its name AND its change: mutmut numbers the mutants of a
function in order, so an edit to the function renumbers them, and an argument that no
longer names the same change is reported as stale instead of silently excusing another.

Exit codes: 0 every survivor argued; 1 some survivor unexplained;
2 no results (run `mutmut run` first).
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# mutmut's own reading of its results: the same code `mutmut results` and `show` use.
from mutmut.mutation.data import SourceFileMutationData
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code

KILLED = {"killed", "timeout", "caught by type check"}
SURVIVED = {"survived", "no tests"}


@dataclass(frozen=True)
class Mutant:
    name: str
    module: str
    status: str
    diff: str

    @property
    def function(self) -> str:
        return self.name.rsplit("__mutmut_", 1)[0]

    @property
    def change(self) -> list[str]:
        """The changed lines, whitespace-normalised: what an argument is checked against."""
        return [
            f"{line[0]} {' '.join(line[1:].split())}".rstrip()
            for line in self.diff.splitlines()
            if line[:1] in "+-" and not line.startswith(("+++", "---"))
        ]


def load(modules: list[str]) -> list[Mutant]:
    mutants = []
    for module in modules:
        data = SourceFileMutationData(path=Path(module))
        data.load()
        for name, code in sorted(data.exit_code_by_key.items(), key=lambda kv: _order(kv[0])):
            status = status_by_exit_code[code]
            diff = get_diff_for_mutant(name, path=module) if status == "survived" else ""
            mutants.append(Mutant(name, module, status, diff))
    return mutants


def _order(name: str) -> tuple[str, int]:
    function, _, number = name.rpartition("__mutmut_")
    return function, int(number) if number.isdigit() else 0


def load_arguments(path: Path) -> dict[str, dict[str, object]]:
    if not path.exists():
        return {}
    with path.open("rb") as f:
        entries = tomllib.load(f).get("argued", [])
    return {entry["mutant"]: entry for entry in entries}


def score(killed: int, survived: int) -> str:
    total = killed + survived
    return f"{100 * killed / total:.1f}%" if total else "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/mutants.md"))
    parser.add_argument("--arguments", type=Path, default=Path("scripts/mutants_argued.toml"))
    parser.add_argument("--seconds", type=int, default=None, help="how long the run took")
    args = parser.parse_args(argv)

    with open("pyproject.toml", "rb") as f:
        modules = tomllib.load(f)["tool"]["mutmut"]["only_mutate"]
    mutants = load(modules)
    if not mutants:
        print("no mutation results under mutants/: run mutmut first", file=sys.stderr)
        return 2
    arguments = load_arguments(args.arguments)

    rows = []
    survivors: list[tuple[Mutant, str | None]] = []
    stale = []
    for module in modules:
        mine = [m for m in mutants if m.module == module]
        counts = Counter(m.status for m in mine)
        killed = sum(counts[s] for s in KILLED)
        survived = sum(counts[s] for s in SURVIVED)
        other = len(mine) - killed - survived
        argued = 0
        for m in mine:
            if m.status not in SURVIVED:
                continue
            entry = arguments.get(m.name)
            why = None
            if entry is not None:
                if entry.get("change") == m.change:
                    why = str(entry["why"])
                    argued += 1
                else:
                    stale.append(m.name)
            survivors.append((m, why))
        rows.append((module, killed, survived, argued, counts["no tests"], other))

    for name in arguments:
        if not any(m.name == name and m.status in SURVIVED for m in mutants) and name not in stale:
            stale.append(name)  # killed now, or no longer generated: the argument can go

    total_killed = sum(r[1] for r in rows)
    total_survived = sum(r[2] for r in rows)
    total_argued = sum(r[3] for r in rows)
    unexplained = total_survived - total_argued
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        _report(rows, survivors, stale, args.seconds, total_killed, total_survived, total_argued),
        encoding="utf-8",
    )

    for module, killed, survived, argued, _no_tests, _other in rows:
        print(
            f"  {module}: killed={killed} survived={survived} (argued {argued}) "
            f"score={score(killed, survived)}"
        )
    if stale:
        print(f"  stale arguments in {args.arguments}: {', '.join(stale)}")
    print(f"  report: {args.out}")
    print(
        f"RESULT mutants_killed={total_killed} mutants_survived={total_survived} "
        f"mutants_argued={total_argued} mutants_unexplained={unexplained} "
        f"score={score(total_killed, total_survived)}"
    )
    return 1 if unexplained else 0


def _report(
    rows: list[tuple[str, int, int, int, int, int]],
    survivors: list[tuple[Mutant, str | None]],
    stale: list[str],
    seconds: int | None,
    killed: int,
    survived: int,
    argued: int,
) -> str:
    out = [
        "# Mutation testing of the guarantees",
        "",
        "Written by `scripts/mutants` (mutmut over the modules below, each mutant tried "
        "against the unit tests that reach its function). Do not edit by hand: change the "
        "tests, or argue a survivor in `scripts/mutants_argued.toml`, and run the "
        "script again.",
        "",
        "Score = killed / (killed + survived); a mutant no test reaches counts as survived, "
        "and so does an argued one. The unit tests run on SQLite, which admits one writer "
        "at a time: a mutant that only PostgreSQL's concurrent transactions can tell apart "
        "survives here, and its argument names the test in "
        "`tests/integration/test_postgres_concurrency.py` that fails with it. "
        "mutmut mutates the code inside functions and methods, not module-level constants "
        "(`MAX_FAILURES`, `CODE_TTL`, `CLAIM_LEASE`...): the tests that pin those values "
        "are the only guard of their numbers.",
        "",
        "| module | killed | survived | of which argued | no test reaches | other | score |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for module, k, s, a, no_tests, other in rows:
        out.append(f"| `{module}` | {k} | {s} | {a} | {no_tests} | {other} | {score(k, s)} |")
    out.append(
        f"| **all** | {killed} | {survived} | {argued} | "
        f"{sum(r[4] for r in rows)} | {sum(r[5] for r in rows)} | {score(killed, survived)} |"
    )
    if seconds is not None:
        out += ["", f"The run took {seconds // 60} min {seconds % 60} s."]
    unreached = Counter(m.function for m, _ in survivors if m.status == "no tests")
    if unreached:
        out += ["", "## Functions no test reaches", ""]
        out += [f"- `{function}`: {n} mutants" for function, n in sorted(unreached.items())]
    out += ["", "## Survivors", ""]
    tested = [(m, why) for m, why in survivors if m.status == "survived"]
    if not tested:
        out.append("None: every mutant a test reaches was killed.")
    for m, why in tested:
        out += [f"### `{m.name}`", ""]
        out.append(why or "**UNEXPLAINED**: kill it with a test, or argue it.")
        out += ["", "```diff", *_hunks(m.diff), "```", ""]
    if stale:
        out += [
            "## Stale arguments",
            "",
            "Arguments in `scripts/mutants_argued.toml` whose mutant was killed, is no "
            "longer generated, or now names another change (the function was edited): "
            "remove or re-argue them.",
            "",
            *[f"- `{name}`" for name in stale],
            "",
        ]
    return "\n".join(out).rstrip() + "\n"


def _hunks(diff: str) -> list[str]:
    return [line for line in diff.splitlines() if not line.startswith(("+++", "---"))]


if __name__ == "__main__":
    sys.exit(main())
