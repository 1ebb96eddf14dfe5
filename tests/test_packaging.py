"""What ``runs`` imports at run time is what its wheel declares, and nothing of the repo's own.

``pyproject.toml``'s ``dependencies`` are the app's runtime needs only (the demo host's and the
simulator's are extras): a module of ``runs`` importing a package that is merely installed here
(through an extra or another package) would break in a host project that lacks it. This reads
every import statement of ``runs`` (function-level ones included) and maps it to its
distribution.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def imported_top_level_modules(package: Path) -> set[str]:
    """Top-level names of every absolute import in ``package``'s modules."""
    names: set[str] = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def declared_dependencies() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}


def test_every_third_party_import_of_runs_is_a_declared_dependency():
    third_party = imported_top_level_modules(ROOT / "runs") - set(sys.stdlib_module_names)
    third_party.discard("runs")
    distributions = packages_distributions()
    needed = {
        module: {canonicalize_name(d) for d in distributions.get(module, [module])}
        for module in third_party
    }
    undeclared = {m: d for m, d in needed.items() if not d & declared_dependencies()}
    assert undeclared == {}, f"imported by runs but not in [project] dependencies: {undeclared}"
