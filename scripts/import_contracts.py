"""An import-linter contract type the built-in ones lack: no cycle between modules.

`acyclic_siblings` looks at the children of each package, so a cycle through a package's own
`__init__` (provider/__init__.py imports provider.services, which imports `provider`) is
invisible to it. This one takes every module of the named packages, the packages' own
modules included, and fails on any strongly connected group of two or more. grimp's graph
holds every import statement, those inside functions too, so a deferred import is no way out.
Registered in pyproject.toml ([tool.importlinter] contract_types) and run by lint-imports.
"""

from __future__ import annotations

import itertools

import grimp
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


class AcyclicModulesContract(Contract):
    type_name = "acyclic_modules"

    packages = fields.ListField(subfield=fields.StringField())

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        modules: set[str] = set()
        for package in self.packages:  # type: ignore[attr-defined]
            modules |= {package, *graph.find_descendants(package)}
        cycles = [_one_cycle(graph, group) for group in _strongly_connected(graph, modules)]
        return ContractCheck(kept=not cycles, metadata={"cycles": cycles})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for cycle in check.metadata["cycles"]:
            output.print_error("Import cycle:")
            for importer, imported, lines in cycle:
                output.print_error(f"  {importer} -> {imported} (l.{lines})", bold=False)
            output.new_line()


def _strongly_connected(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the groups of two or more modules that reach each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    edges = {m: sorted(graph.find_modules_directly_imported_by(m) & modules) for m in modules}
    for root in sorted(modules):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            if i < len(edges[node]):
                work.append((node, i + 1))
                nxt = edges[node][i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if work:  # back in the caller: it inherits what this node reached
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def _one_cycle(graph: grimp.ImportGraph, group: list[str]) -> list[tuple[str, str, str]]:
    """The shortest cycle through the group's first module, each import with its lines."""
    start = group[0]
    chains = [
        (start, *chain)
        for nxt in graph.find_modules_directly_imported_by(start)
        if nxt in group and (chain := graph.find_shortest_chain(importer=nxt, imported=start))
    ]
    cycle = min(chains, key=len)
    return [
        (
            a,
            b,
            ", ".join(
                str(d["line_number"]) for d in graph.get_import_details(importer=a, imported=b)
            ),
        )
        for a, b in itertools.pairwise(cycle)
    ]
