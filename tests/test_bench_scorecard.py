"""The scorecard of ``make bench`` (``bench/scorecard.py``): issue 13's aims, judged from the
reports one run wrote, each figure beside a baseline from the same run and the load it ran under.

These read synthetic reports; the parts that write real ones have their own smoke tests
(tests/test_bench.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import scorecard, scorecard_rows, stats
from bench.report import intake_lines
from bench.workload import Shape, ended_floor, make_workload

BUSY = {"load1_start": 3.0, "load1_end": 5.0, "load1": 5.0, "cores": 2, "over": True}
CALM = {"load1_start": 0.4, "load1_end": 1.1, "load1": 1.1, "cores": 2, "over": False}
ISSUE_SHAPE = Shape(durations="uniform", min_s=5.0, max_s=20.0)


def scenario(strategy: str, p99: float, wall_s: float, **extra: Any) -> dict[str, Any]:
    return {
        "n": 1000,
        "strategy": strategy,
        "topology": "shared",
        "terminal": 1000,
        "finished": True,
        "detection_ms": {"p99": p99},
        "wall_s": wall_s,
        "longest_run_s": 20.0,
        "load": CALM,
        **extra,
    }


def write_reports(out: Path) -> None:
    n1000 = {
        "scenarios": [
            scenario("tutorial", 7000.0, 24.0),
            scenario("webhook", 200.0, 23.0),
            scenario("webhook", 900.0, 30.0, topology="split", load=BUSY),
            scenario("countdown", 6500.0, 26.0),
        ],
        "intake": {"http": {"signed_per_s": 130.0, "bare_per_s": 150.0, "ratio": 0.867}},
        "workload_shape": ISSUE_SHAPE.as_dict(),
        "config": {"seed": 7},
    }
    n10000 = {
        "scenarios": [
            scenario(
                "webhook", 800.0, 120.0, n=10000, terminal=10000, topology="split",
                poll_mode="batched", start_lag_ms={"max": 100000.0},
                processes={"worker": {"cpu_s": 180.0}, "web": {"cpu_s": 30.0}},
                sim_pace={"probe_rtt_ms": {"p50": 2.0, "p99": 20.0}},
            )
        ]
    }  # fmt: skip
    pair = {
        "bare": {"starts_per_s": 200.0, "threads": 16},
        "ours": {"strategy": "webhook", "n": 1000, "submitted": 1000, "chunk": 16,
                 "threads": 16, "starts_per_s": 120.0, "load": CALM},
    }  # fmt: skip
    for part, report in (("n1000", n1000), ("n10000", n10000), ("start_rate", {"pairs": [pair]})):
        path = out / scorecard.REPORTS[part]
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(report))


def test_the_issues_workload_draws_durations_uniformly_between_its_bounds() -> None:
    durations = [p.duration_s for p in make_workload(1000, 7, ISSUE_SHAPE)]
    assert 5.0 <= min(durations) < 6.0 and 19.0 < max(durations) <= 20.0
    assert 400 < sum(1 for d in durations if d < 12.5) < 600
    with pytest.raises(ValueError, match="durations must be one of"):
        Shape(durations="normal")
    with pytest.raises(ValueError, match="above max_s"):
        Shape(min_s=30.0, max_s=20.0)


def test_every_part_runs_the_issues_workload_and_reports_where_the_scorecard_reads(
    tmp_path: Path,
) -> None:
    commands = scorecard.commands(tmp_path)
    assert set(commands) == set(scorecard.PARTS) == set(scorecard.REPORTS)
    for part in ("n1000", "n10000"):
        argv = " ".join(commands[part])
        assert "--durations uniform --min-s 5 --max-s 20" in argv
        assert "--threads 8" in argv
    for part, argv in commands.items():
        out = Path(argv[argv.index("--out") + 1])
        report = tmp_path / scorecard.REPORTS[part]
        assert report.is_relative_to(out) or report.with_suffix("") == out


def test_each_aim_is_judged_against_a_baseline_from_the_same_run(tmp_path: Path) -> None:
    write_reports(tmp_path)
    assert scorecard.main(["--compile-only", "--out", str(tmp_path)]) == 0
    card = json.loads((tmp_path / "scorecard.json").read_text())
    rows = card["rows"]

    fast, slow = [r for r in rows if "detection p99 <= 250 ms" in r["aim"]]
    assert (fast["met"], slow["met"]) == (True, False)
    assert (
        fast["ratio"] == round(200 / 7000, 3) and "tutorial loop p99 7,000 ms" in fast["baseline"]
    )
    assert slow["where"] == "N=1,000, split queues" and slow["load"]["over"]

    ended = [r for r in rows if "all ended" in r["aim"]]
    assert [r["met"] for r in ended] == [True, False]  # 23/20 = 1.15x; 30/20 = 1.5x
    floor = ended_floor(make_workload(1000, 7, ISSUE_SHAPE), 200.0)
    assert 1.0 < floor < 1.3  # 1,000 creates at 200/s take 5 s of the 20 s runs' time
    assert ended[0]["baseline"] == (
        f"tutorial loop 1.20x; created at the bare SDK loop's rate, {floor:.2f}x"
    )
    polled = next(r for r in rows if "by polling" in r["aim"])
    assert polled["met"] is False  # 6.5 s > the cap + 1 s
    intake = next(r for r in rows if r["aim"].startswith("Intake"))
    assert intake["met"] and intake["ratio"] == 0.867
    start = next(r for r in rows if r["aim"].startswith("Start throughput"))
    assert start["met"] and start["ratio"] == 0.6

    big = [r for r in rows if r["aim"].startswith("N = 10,000")]
    assert [r["met"] for r in big] == [True, True, None, None]
    # The N = 1,000 part polls per run only: the baseline is its row of the same queues.
    assert big[1]["baseline"] == "N=1,000, split queues (per-run polls): 900 ms"
    assert big[2]["measured"] == "100.0 starts/s" and big[2]["ratio"] == 0.5
    assert big[3]["measured"].startswith("cores used: worker 1.50, web 0.25")

    page = (tmp_path / "scorecard.md").read_text()
    assert "**6 of 9 aims met.**" in page
    assert "⚠ load 5.0 > 2 cores" in page


def test_a_start_rate_row_measured_several_times_is_its_median_pair_with_every_ratio_shown(
    tmp_path: Path,
) -> None:
    def pair(ours_per_s: float) -> dict[str, Any]:
        return {
            "bare": {"starts_per_s": 200.0, "threads": 16},
            "ours": {"strategy": "webhook", "n": 1000, "submitted": 1000, "chunk": 1,
                     "threads": 16, "starts_per_s": ours_per_s, "load": CALM},
            "ratio": round(ours_per_s / 200.0, 3),
        }  # fmt: skip

    median = stats.reported_pair([pair(120.0), pair(80.0), pair(104.0)])
    assert median["ratio"] == 0.52 and median["pair_ratios"] == [0.6, 0.4, 0.52]
    assert [p["ratio"] for p in median["other_pairs"]] == [0.6, 0.4]
    assert stats.reported_pair([pair(120.0), pair(80.0)])["ratio"] == 0.4  # the lower middle

    path = tmp_path / scorecard.REPORTS["start_rate"]
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"pairs": [median]}))
    assert scorecard.main(["--compile-only", "--out", str(tmp_path)]) == 0
    (row,) = json.loads((tmp_path / "scorecard.json").read_text())["rows"]
    assert row["met"] and row["ratio"] == 0.52
    assert row["where"].endswith(", median of 3 pairs (0.60x, 0.40x, 0.52x)")


def test_a_part_missing_from_the_run_leaves_its_rows_out_rather_than_failing(
    tmp_path: Path,
) -> None:
    assert scorecard.main(["--compile-only", "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "scorecard.json").read_text())["rows"] == []


def test_a_run_compiles_only_the_parts_that_ran_and_exited_0_in_it(tmp_path: Path) -> None:
    write_reports(tmp_path)  # reports of every part, as an earlier run left them
    parts = [{"part": "n1000", "rc": 0}, {"part": "n10000", "rc": 1}]
    aims = {r["aim"].split(":")[0] for r in scorecard.compile_rows(tmp_path, parts)}
    assert aims == {
        "N = 1,000 by webhook",
        "N = 1,000 by polling",
        "Intake >= 0.8x the bare view over HTTP",
    }


def test_intake_is_judged_on_each_event_loop_the_run_measured_and_says_which() -> None:
    fast = {"signed_per_s": 204.0, "bare_per_s": 561.0, "ratio": 0.364, "server": "uvloop"}
    slow = {"signed_per_s": 116.0, "bare_per_s": 147.0, "ratio": 0.789, "server": "asyncio"}
    results = {"scenarios": [], "intake": {"http": fast, "http_asyncio": slow, "load": CALM}}

    rows = scorecard_rows.n1000_rows(results, None, "n1000/results.json")

    # The aim is judged on the loop the web processes run; asyncio's row is a report beside it.
    assert [(r["where"], r["met"]) for r in rows] == [
        ("signed events through uvicorn on uvloop", False),
        ("signed events through uvicorn on asyncio", None),
    ]
    # A report from before the loop was named was measured on asyncio, and says so.
    older = {"signed_per_s": 130.0, "bare_per_s": 150.0, "ratio": 0.867}
    (row,) = scorecard_rows.n1000_rows({"scenarios": [], "intake": {"http": older}}, None, "x")
    assert row["where"].endswith("on asyncio") and row["met"]


def test_the_intake_is_judged_against_the_bare_view_served_its_own_way() -> None:
    """The intake runs on Django's WSGI handler; the aim compares like with like, and the bare
    view on the ASGI handler (the older yardstick) is a report beside it."""
    fast = {"signed_per_s": 480.0, "bare_per_s": 560.0, "ratio": 0.857, "server": "uvloop",
            "bare_same_path_per_s": 2400.0, "ratio_same_path": 0.2}  # fmt: skip
    results = {"scenarios": [], "intake": {"http": fast, "load": CALM}}

    judged, beside = scorecard_rows.n1000_rows(results, None, "n1000/results.json")

    assert (judged["ratio"], judged["met"]) == (0.2, False)
    assert judged["baseline"] == "bare view 2400.0/s"
    assert "intake's own path" in judged["where"]
    assert (beside["ratio"], beside["met"]) == (0.857, None)
    assert beside["aim"].endswith("(report)") and "ASGI handler" in beside["where"]


def test_the_intake_table_compares_the_two_event_loops_it_alternated_between() -> None:
    fast = {
        "how": "fast",
        "signed_per_s": 204.0,
        "bare_per_s": 561.0,
        "ratio": 0.36,
        "server": "uvloop",
    }
    slow = {"how": "slow", "signed_per_s": 116.0, "bare_per_s": 147.0, "ratio": 0.79,
            "server": "asyncio"}  # fmt: skip

    lines = intake_lines({"http": fast, "http_asyncio": slow, "load": CALM})

    assert lines[-1] == (
        "The same views on the two event loops, rounds alternating: signed events 1.76x, the bare "
        "view 3.82x on uvloop against asyncio."
    )
