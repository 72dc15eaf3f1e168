"""The layers import one way: each package only from the floors below it, never a sibling role.

bulkflow (shared infrastructure) <- schemas <- ingest_api | stream_agents <- ops
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Each package and the project packages it may import.
ALLOWED = {
    "bulkflow": {"bulkflow"},
    "schemas": {"bulkflow", "schemas"},
    "ingest_api": {"bulkflow", "schemas", "ingest_api"},
    "stream_agents": {"bulkflow", "schemas", "stream_agents"},
    "ops": {"bulkflow", "schemas", "ingest_api", "stream_agents", "ops"},
}


def imports(path: Path) -> set[str]:
    """The project packages a module imports, at any depth (function bodies too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(ALLOWED)


def graph() -> dict[str, set[str]]:
    """Package -> the project packages its modules import."""
    edges: dict[str, set[str]] = {name: set() for name in ALLOWED}
    for package in ALLOWED:
        for module in (ROOT / package).rglob("*.py"):
            edges[package] |= imports(module) - {package}
    return edges


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_the_floors_below(package: str) -> None:
    for module in (ROOT / package).rglob("*.py"):
        wrong = imports(module) - ALLOWED[package]
        assert not wrong, f"{module.relative_to(ROOT)} imports {sorted(wrong)}"


def test_the_package_graph_has_no_cycle() -> None:
    edges = graph()
    done: set[str] = set()

    def visit(package: str, path: tuple[str, ...]) -> None:
        assert package not in path, f"import cycle: {' -> '.join((*path, package))}"
        if package in done:
            return
        for imported in edges[package]:
            visit(imported, (*path, package))
        done.add(package)

    for package in edges:
        visit(package, ())
