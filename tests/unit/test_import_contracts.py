"""The project's own import-linter contract (scripts/import_contracts.py) on small graphs.

lint-imports runs it on the real code; these pin what it must see that the built-in
acyclic_siblings does not (a cycle through a package's own __init__ module; seen by breaking
provider/services.py once), and the cycle it names, import by import.
"""

from __future__ import annotations

import grimp
from import_contracts import AcyclicModulesContract


def graph(*imports: tuple[str, str]) -> grimp.ImportGraph:
    g = grimp.ImportGraph()
    for module in ("app", "app.a", "app.b", "app.sub", "app.sub.c"):
        g.add_module(module)
    for n, (importer, imported) in enumerate(imports, start=1):
        g.add_import(importer=importer, imported=imported, line_number=n, line_contents="")
    return g


def modules_contract(g: grimp.ImportGraph) -> list[list[tuple[str, str, str]]]:
    contract = AcyclicModulesContract("t", {}, {"packages": ["app"]})
    check = contract.check(g, verbose=False)
    assert check.kept == (not check.metadata["cycles"])
    return check.metadata["cycles"]


def test_a_cycle_through_a_package_init_is_found() -> None:
    # app/__init__.py imports app.a, and app.a imports app (the shape of create_app and a
    # module that reached back for it).
    g = graph(("app", "app.a"), ("app.a", "app"))
    assert modules_contract(g) == [[("app", "app.a", "1"), ("app.a", "app", "2")]]


def test_a_cycle_across_subpackages_is_found_with_each_import_line() -> None:
    g = graph(("app.a", "app.sub.c"), ("app.sub.c", "app.b"), ("app.b", "app.a"))
    assert modules_contract(g) == [
        [("app.a", "app.sub.c", "1"), ("app.sub.c", "app.b", "2"), ("app.b", "app.a", "3")]
    ]


def test_imports_in_one_direction_keep_the_contract() -> None:
    g = graph(("app", "app.a"), ("app.a", "app.b"), ("app.sub.c", "app.a"), ("app", "app.sub"))
    assert modules_contract(g) == []


def test_each_separate_cycle_is_reported() -> None:
    g = graph(
        ("app.a", "app.b"), ("app.b", "app.a"), ("app.sub", "app.sub.c"), ("app.sub.c", "app.sub")
    )
    assert len(modules_contract(g)) == 2
