"""Smoke test of the benchmark code (``bench/``) at a tiny N, and of its pure helpers.

The end-to-end case starts its own Redis, simulator and worker processes and writes to a
temporary directory with its own database (``BENCH_DB_NAME``), so it never meets a real bench
run. It needs psutil (in the ``test`` extra); without it, it skips with a message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.stats import peak_rate, percentile
from bench.workload import Shape, make_workload, summary

ROOT = Path(__file__).resolve().parent.parent


def test_workload_is_seeded_and_shaped() -> None:
    plans = make_workload(500, 3, Shape())
    assert plans == make_workload(500, 3, Shape())
    assert all(1.0 <= p.duration_s <= 40.0 for p in plans)
    facts = summary(plans)
    assert 6.5 <= facts["median_s"] <= 9.5
    assert 0 < sum(n for o, n in facts["outcomes"].items() if o != "completed") < 60
    assert plans[0].metadata()["sim_outcome"] in {"completed", "failed", "incomplete", "cancelled"}


def test_percentile_and_peak_rate() -> None:
    assert percentile([], 50) is None
    assert percentile([3, 1, 2], 50) == 2
    assert percentile(list(range(1, 101)), 99) == 99
    samples = [(0.0, 0), (0.5, 10), (1.0, 20), (1.5, 100), (2.0, 110)]
    assert peak_rate(samples, 1.0) == 90.0


@pytest.mark.integration
def test_bench_runs_end_to_end_at_tiny_n(tmp_path: Path) -> None:
    pytest.importorskip("psutil", reason="psutil is not installed (pip install -e '.[test]')")
    env = {**os.environ, "BENCH_DB_NAME": "runs_bench_smoke"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [
            sys.executable, "-m", "bench", "--quick", "--ns", "4",
            "--strategies", "tutorial", "countdown", "webhook",
            "--median-s", "1", "--max-s", "2", "--no-intake", "--cap-s", "40",
            "--out", str(tmp_path),
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads((tmp_path / "quick.json").read_text())
    by_strategy = {s["strategy"]: s for s in results["scenarios"]}
    assert set(by_strategy) == {"tutorial", "countdown", "webhook"}
    for s in by_strategy.values():
        assert s["finished"], s
        assert s["calls"]["create"] == 4
    assert by_strategy["webhook"]["retrieves_per_completed_run"] in (None, 1.0)
    assert (tmp_path / "quick.md").read_text().startswith("# Benchmark")
