"""The shape of the code, checked: imports point one way and no module grows past a page or so.

``make lint`` runs import-linter's contracts (``[tool.importlinter]`` in pyproject.toml); these
tests add what a layers contract cannot say: there is no import cycle anywhere in ``runs`` (a
function-level import counts like any other), and every module of the app is small.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
#: "No module in runs/ over about 300 lines": a little slack for docstrings, never a second page.
MAX_LINES = 320


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("runs", cache_dir=None)


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(module: str) -> None:
        index[module] = low[module] = counter[0]
        counter[0] += 1
        stack.append(module)
        on_stack.add(module)
        for target in graph.find_modules_directly_imported_by(module):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_runs_has_no_import_cycle_function_level_imports_included(graph):
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle_hidden_in_a_function():
    """The check itself: a lazy import that closes a loop is a cycle."""
    fake = grimp.ImportGraph()
    for name in ("pkg", "pkg.a", "pkg.b"):
        fake.add_module(name)
    fake.add_import(importer="pkg.a", imported="pkg.b")
    fake.add_import(importer="pkg.b", imported="pkg.a")  # e.g. ``def f(): from . import a``
    assert _cycles(fake) == [["pkg.a", "pkg.b"]]


def test_the_import_contract_holds():
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_module_of_the_app_is_longer_than_a_page_or_so():
    long = {
        str(path.relative_to(ROOT)): n
        for path in (ROOT / "runs").rglob("*.py")
        if "migrations" not in path.parts and (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
