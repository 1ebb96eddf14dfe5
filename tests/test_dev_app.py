"""The runtime app stands alone: development tooling lives in ``runs_dev``.

A host project installs ``runs`` without the demo project (``project``), the simulator or the
benchmarks; only ``runs_dev`` (the demo, chaos and simulator commands, the example tools, child
processes) may import them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.core.management import get_commands

RUNS = Path(__file__).resolve().parent.parent / "runs"
#: Top-level packages of this repository that ``runs`` must never import.
FORBIDDEN = {"runs_dev", "project", "runs_simulator", "bench", "tests"}


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name a file imports, at module level or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize(
    "path", sorted(RUNS.rglob("*.py")), ids=lambda p: str(p.relative_to(RUNS.parent))
)
def test_runs_imports_no_dev_tooling(path):
    bad = {m for m in imported_modules(path) if m.split(".")[0] in FORBIDDEN}
    assert not bad, f"{path.relative_to(RUNS.parent)} imports {sorted(bad)}"


@pytest.mark.parametrize("command", ["demo", "chaos", "runsimulator"])
def test_the_dev_commands_come_from_the_dev_app(command):
    assert get_commands()[command] == "runs_dev"


@pytest.mark.parametrize("command", ["startrun", "runstatus"])
def test_the_operator_commands_stay_in_runs(command):
    assert get_commands()[command] == "runs"


def test_uvicorn_runs_on_the_event_loop_named_and_otherwise_chooses_itself() -> None:
    """The bench names the loop it measures; the demo leaves uvicorn's own choice, uvloop when
    the demo extra installed it."""
    from runs_dev.processes import uvicorn_args

    assert uvicorn_args(8000, 2, "asyncio")[-2:] == ["--loop", "asyncio"]
    assert uvicorn_args(8000, 2, "uvloop")[-2:] == ["--loop", "uvloop"]
    assert "--loop" not in uvicorn_args(8000, 2)
