"""Smoke test of the benchmark code (``bench/``) at a tiny N, and of its pure helpers.

The end-to-end case starts its own Redis, simulator and worker processes and writes to a
temporary directory with its own database (``BENCH_DB_NAME``), so it never meets a real bench
run. It needs psutil (in the ``test`` extra); without it, it skips with a message.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.load import LoadWindow, flag
from bench.scale_out import compare
from bench.stats import peak_rate, percentile
from bench.workload import Shape, make_workload, summary

ROOT = Path(__file__).resolve().parent.parent


def run_bench(
    db_name: str, args: list[str], *, timeout: float, postgres_only: bool = False
) -> None:
    """``python -m <args>`` from the checkout, as a shell would start it (the bench's own
    settings, not the tests'), on a bench database of its own; it must succeed. A bench that
    needs PostgreSQL (``postgres_only``) skips with its own message where there is none."""
    env = {**os.environ, "BENCH_DB_NAME": db_name}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    if postgres_only and done.returncode == 2 and "needs PostgreSQL" in done.stderr:
        pytest.skip(done.stderr.strip())
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


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


def test_a_row_measured_above_the_core_count_is_flagged() -> None:
    calm = {"load1_start": 0.5, "load1_end": 1.2, "load1": 1.2, "cores": 2, "over": False}
    busy = {"load1_start": 3.1, "load1_end": 1.0, "load1": 3.1, "cores": 2, "over": True}
    assert flag(calm) == ""
    assert flag(busy) == "⚠ load 3.1 > 2 cores"
    seen = LoadWindow().start().stop()
    assert seen["cores"] >= 1 and seen["over"] == (seen["load1"] > seen["cores"])


def test_two_nodes_meet_the_aim_only_at_1_6x_with_nothing_lost_or_doubled() -> None:
    one = {"broker": "redis", "runs_per_s": 10.0, "lost": 0, "doubled": 0}
    assert compare(one, {**one, "runs_per_s": 17.0})["met"]
    assert compare(one, {**one, "runs_per_s": 17.0})["throughput_ratio"] == 1.7
    assert not compare(one, {**one, "runs_per_s": 15.0})["met"]
    assert not compare(one, {**one, "runs_per_s": 19.0, "doubled": 1})["met"]


@pytest.mark.integration
def test_scale_out_mode_runs_two_nodes_and_the_tick_rate_at_tiny_n(tmp_path: Path) -> None:
    pytest.importorskip("psutil", reason="psutil is not installed (pip install -e '.[test]')")
    run_bench(
        "runs_bench_smoke",
        [
            "bench", "--scale-out", "--parts", "scale", "tick",
            "--brokers", "redis", "--scale-n", "6", "--latency-ms", "10", "--run-s", "0.5",
            "--tick-chains", "4", "--tick-window-s", "1", "--tick-batched-runs", "20",
            "--tick-repeats", "2",
            "--cap-s", "60", "--out", str(tmp_path),
        ],
        timeout=180,
    )  # fmt: skip
    results = json.loads((tmp_path / "scale_out.json").read_text())
    one, two = results["scale_out"]["rows"]
    assert (one["nodes"], two["nodes"]) == (1, 2)
    for row in (one, two):
        assert (row["terminal"], row["lost"], row["doubled"]) == (6, 0, 0), row
        assert "cores" in row["load"]
    assert all(host.startswith("node-") for host in two["tasks_per_node"])
    tick = results["tick_rate"]
    assert tick["bare"]["ticks"] > 0 and tick["poll"]["ticks"] > 0
    assert 0.9 <= tick["poll"]["retrieves_per_tick"] <= 1.5  # every poll tick was a real one
    assert tick["batched"]["runs"] == 20 and tick["batched"]["ticks"] > 0
    # Measured in pairs, each with its own bare baseline; the figures are one real pair's.
    assert len(tick["pairs"]) == tick["repeats"] == 2
    assert tick["ratio"] in tick["pair_ratios"]
    report = (tmp_path / "scale_out.md").read_text()
    assert report.startswith("# Scale-out") and "the pair with the median ratio of 2" in report


@pytest.mark.integration
def test_bench_runs_end_to_end_at_tiny_n(tmp_path: Path) -> None:
    pytest.importorskip("psutil", reason="psutil is not installed (pip install -e '.[test]')")
    run_bench(
        "runs_bench_smoke",
        [
            "bench", "--quick", "--ns", "4",
            "--strategies", "tutorial", "countdown", "webhook",
            "--median-s", "1", "--max-s", "2", "--no-intake", "--cap-s", "40",
            "--out", str(tmp_path),
        ],
        timeout=120,
    )  # fmt: skip
    results = json.loads((tmp_path / "quick.json").read_text())
    by_strategy = {s["strategy"]: s for s in results["scenarios"]}
    assert set(by_strategy) == {"tutorial", "countdown", "webhook"}
    for s in by_strategy.values():
        assert s["finished"], s
        assert s["calls"]["create"] == 4
    assert by_strategy["webhook"]["retrieves_per_completed_run"] in (None, 1.0)
    assert (tmp_path / "quick.md").read_text().startswith("# Benchmark")


@pytest.mark.integration
def test_the_cost_bench_compares_modes_at_tiny_n(tmp_path: Path) -> None:
    """Every mode's runs end, each row has a cost per 1,000 runs and its API calls per run, and
    the Batch API's row shares its calls across the batch's runs."""
    pytest.importorskip("psutil", reason="psutil is not installed (pip install -e '.[test]')")
    run_bench(
        "runs_bench_smoke_cost",
        [
            "bench.cost_modes", "--n", "6",
            "--modes", "standard", "8h", "batch", "--strategies", "webhook",
            "--time-scale", "0.0005", "--out", str(tmp_path / "cost_modes"),
        ],
        timeout=240,
    )  # fmt: skip
    results = json.loads((tmp_path / "cost_modes.json").read_text())
    rows = {s["mode"]: s for s in results["scenarios"]}
    assert set(rows) == {"standard", "8h", "batch"}
    for row in rows.values():
        assert row["statuses"] == {"completed": 6}, row
        assert row["cost_per_1000_usd"] is not None and row["doubled_creates"] == 0
    assert rows["batch"]["api_calls_per_run"] < rows["standard"]["api_calls_per_run"]
    assert rows["8h"]["wall_over_window"] < 1
    assert (tmp_path / "cost_modes.md").read_text().startswith("# Cost and API calls")
    if importlib.util.find_spec("matplotlib") is not None:  # the bench extra draws the PNG
        assert (tmp_path / "cost_modes.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("row", "polled", "noted"),
    [
        ({"strategy": "countdown", "poll_mode": "auto"}, "auto polls", []),
        ({"strategy": "countdown", "poll_mode": "batched"}, "batched polls", ["batched polls"]),
        # a row from before "auto" has no poll_mode: it polled per run
        ({"strategy": "countdown"}, "per-run polls", ["per-run polls"]),
        ({"strategy": "webhook", "safety_net_mode": "batched"}, "safety nets by due time", []),
        (
            {"strategy": "webhook", "poll_mode": "batched", "safety_net_mode": "per_run"},
            "per-run safety nets",  # RUNS_SAFETY_NET_MODE alone decides for webhook runs
            ["per-run safety nets"],
        ),
        ({"strategy": "webhook"}, "per-run polls", []),  # from before RUNS_SAFETY_NET_MODE
        ({"strategy": "tutorial", "topology": "split"}, "", ["split queues"]),  # not ours
    ],
)
def test_a_row_says_how_it_was_polled_and_notes_it_where_not_the_default(
    row, polled, noted
) -> None:
    from bench.topology import notes
    from bench.topology import polled as polled_words

    assert polled_words(row) == polled
    assert notes(row) == noted


def test_the_split_topology_keeps_wakes_and_polls_apart_from_niced_chunked_starts() -> None:
    from bench.topology import roles

    wakes, starts = roles("split", 2, starts_nice=10, split_chunk=16)

    assert wakes.queues == ("runs.wakes", "celery", "runs.polls")
    assert (wakes.nice, wakes.start_chunk) == (0, None)
    assert starts.queues == ("runs.starts", "runs.tools")
    assert (starts.nice, starts.start_chunk) == (10, 16)
    assert [r.queues for r in roles("shared", 2, starts_nice=10, split_chunk=16)] == [None, None]
    with pytest.raises(ValueError, match="at least 2 workers"):
        roles("split", 1, starts_nice=10, split_chunk=16)


def test_a_split_webhook_row_ends_every_run_and_says_where_detection_went(
    tmp_path: Path,
) -> None:
    pytest.importorskip("psutil", reason="psutil is not installed (pip install -e '.[test]')")
    run_bench(
        "runs_bench_smoke",
        [
            "bench", "--quick", "--ns", "4", "--strategies", "webhook",
            "--topologies", "split", "--median-s", "1", "--max-s", "2", "--no-intake",
            "--cap-s", "40", "--out", str(tmp_path),
        ],
        timeout=120,
    )  # fmt: skip
    (row,) = json.loads((tmp_path / "quick.json").read_text())["scenarios"]
    assert row["finished"] and row["topology"] == "split"
    assert [r["name"] for r in row["roles"]] == ["wakes", "starts"]
    assert row["webhook_legs"]["delivery_ms"]["count"] == 4
    assert "split queues" in (tmp_path / "quick.md").read_text()


@pytest.mark.postgres
def test_the_result_store_bench_compares_both_backends_side_by_side(tmp_path: Path) -> None:
    """Both backends store the same results in one process; ours in one statement each."""
    run_bench(
        "runs_bench_smoke_results",
        [
            "bench.result_store", "--n", "20", "--repeats", "2",
            "--out", str(tmp_path / "result_store"),
        ],
        timeout=120, postgres_only=True,
    )  # fmt: skip
    results = json.loads((tmp_path / "result_store.json").read_text())
    assert len(results["pairs"]) == 2
    for pair in results["pairs"]:
        assert pair["runs.results"]["statements"] == 1
        assert pair["django-db"]["statements"] > 1
        assert pair["cpu_ratio"] > 0 and pair["runs.results"]["load"]["cores"] >= 1
    assert "Median repeat" in (tmp_path / "result_store.md").read_text()


@pytest.mark.postgres
def test_the_intake_store_bench_serves_both_stores_and_counts_their_statements(
    tmp_path: Path,
) -> None:
    """One statement per delivery on PostgreSQL, two the SQLite way (in one transaction, so
    that a process killed between them leaves no event without its wake), measured in one run."""
    run_bench(
        "runs_bench_smoke_intake_store",
        [
            "bench.intake_store", "--rounds", "1", "--seconds", "0.3",
            "--out", str(tmp_path),
        ],
        timeout=180, postgres_only=True,
    )  # fmt: skip
    results = json.loads((tmp_path / "intake_store.json").read_text())
    statements = {s: r["statements"] for s, r in results["inprocess"]["rounds"].items()}
    assert statements == {
        "one_statement": ["WITH"],
        "insert_then_wake": ["BEGIN", "INSERT", "UPDATE", "COMMIT"],
    }
    for part in ("inprocess", "http"):
        for store in ("one_statement", "insert_then_wake"):
            assert results[part]["rounds"][store]["per_s"][0] > 0
        assert results[part]["summary"]["ratio"] > 0 and results[part]["load"]["cores"] >= 1
    assert "One statement against two" in (tmp_path / "intake_store.md").read_text()


def test_the_keepalive_page_sets_each_loop_against_uvloop_with_as_many_workers() -> None:
    from bench import keepalive

    rows = [
        {"loop": loop, "workers": workers, "ms_per_request": ms, "rounds_ms": [ms]}
        for (loop, workers), ms in zip(keepalive.CONFIGS, (0.5, 44.0, 0.5, 0.4), strict=True)
    ]
    page = keepalive.markdown(
        {"command": "python -m bench.keepalive", "generated_at": "now", "requests": 100,
         "repeats": 1, "rows": rows, "load": {"load1_start": 0.5, "load1_end": 0.6}}
    )  # fmt: skip

    assert "| asyncio | 2 | 44.00 | 44.00 | 110.0x |" in page
    assert "| uvloop | 2 | 0.40 | 0.40 | 1.0x |" in page
    with pytest.raises(SystemExit):
        keepalive.parse_args(["--requests", "0"])


def test_intake_over_http_measures_each_loop_in_turns_and_names_it(monkeypatch, tmp_path) -> None:
    from bench import intake

    ports = iter([9001, 9002])
    served, measured = {}, []
    monkeypatch.setattr(intake, "free_port", lambda: next(ports))
    monkeypatch.setattr(intake.time, "sleep", lambda s: None)

    def start_web(stack, env, port, *, workers, server, app):
        assert app == "bench.asgi:application"  # the bare view on the intake's path too
        served[f"http://127.0.0.1:{port}"] = server

    def rate(url, secret, ids_file, seconds, clients, threads, tag):
        server = served[url.rsplit("/", 3)[0]]
        same_path = url.endswith(intake.BARE_WSGI_PATH)
        if not tag.startswith("warm"):
            measured.append((server, "signed" if secret else "wsgi" if same_path else "bare"))
        base = {"uvloop": 500.0, "asyncio": 150.0}[server] * (5 if same_path else 1)
        return base / (2.5 if secret else 1)

    monkeypatch.setattr(intake.processes, "start_web", start_web)
    monkeypatch.setattr(intake, "_http_rate", rate)

    by_loop = intake.over_http(
        {}, "whsec_x", ["resp_1"], tmp_path, seconds=1, rounds=2, servers=("uvloop", "asyncio")
    )

    assert {loop: (m["bare_per_s"], m["signed_per_s"]) for loop, m in by_loop.items()} == {
        "uvloop": (500.0, 200.0),
        "asyncio": (150.0, 60.0),
    }
    assert by_loop["asyncio"]["server"] == "asyncio"
    assert "Nagle left on by --workers" in by_loop["asyncio"]["how"]
    # Beside the stock yardstick, the bare view served the way the intake is.
    assert (by_loop["uvloop"]["bare_same_path_per_s"], by_loop["uvloop"]["ratio_same_path"]) == (
        2500.0,
        0.08,
    )
    # Each round turns the order, so neither loop always meets the larger events table.
    assert [server for server, kind in measured if kind == "bare"] == [
        "uvloop", "asyncio", "asyncio", "uvloop",
    ]  # fmt: skip


def test_intake_in_process_keeps_the_views_own_cpu_per_request(monkeypatch) -> None:
    from django.conf import settings

    from bench import intake

    rounds = iter([(5000.0, 0.20), (250.0, 2.5), (4800.0, 0.16), (240.0, 2.1)])
    monkeypatch.setattr(intake, "_inprocess_rate", lambda *args: next(rounds))
    # The bench sets the secret it signs with; monkeypatch puts the test settings' back after.
    monkeypatch.setattr(settings, "OPENAI_WEBHOOK_SECRET", settings.OPENAI_WEBHOOK_SECRET)

    measured = intake.inprocess("whsec_x", ["resp_1"], seconds=1, rounds=2)

    assert (measured["bare_per_s"], measured["signed_per_s"]) == (5000.0, 250.0)
    assert measured["cpu_ms_per_request"] == {"bare": 0.16, "signed": 2.1}


def test_the_scenarios_web_loop_is_uvloop_unless_named_and_only_a_known_one() -> None:
    from bench.__main__ import parse_args

    assert parse_args(["--quick"]).web_loop == "uvloop"
    assert parse_args(["--quick", "--web-loop", "asyncio"]).web_loop == "asyncio"
    with pytest.raises(SystemExit):
        parse_args(["--quick", "--web-loop", "trio"])
