"""Cost and API calls per run by mode, side by side: ``python -m bench.cost_modes``.

The same runs (same prompts, every one completing) in each processing mode: standard, flex, the
2h and 8h background windows, and the Batch API; each by webhook and by polling. One deployment
for every row: the simulator, a private Redis as the broker, PostgreSQL (database
``runs_bench_cost``), 2 worker processes of 8 threads, beat, and uvicorn for webhooks. For each
row it records

* cost per 1,000 runs (``Run.cost``, from the simulator's usage and the price table), and its
  ratio against standard processing by the same strategy;
* API calls per run, counted by the simulator (every ``/v1`` request: conversations, creates,
  retrieves, file uploads and downloads, batch creates), and by our own counters;
* wall time (first enqueue to last run terminal) against the mode's window, on the simulator's
  time scale (``RUNS_TIME_SCALE``, shared by the simulator and the workers);
* the 1-minute load average at start and end, with the core count.

Writes ``docs/bench/cost_modes.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import os
import random
import secrets
import sys
import tempfile
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("BENCH_DB_NAME", "runs_bench_cost")

from project.localredis import start_private_redis  # noqa: E402

from .database import choose_url, empty_tables, vendor  # noqa: E402
from .load import LoadWindow, flag  # noqa: E402
from .standalone import point_at, wait_workers  # noqa: E402

MODES = ("standard", "flex", "2h", "8h", "batch")
STRATEGIES = ("webhook", "poll")
QUEUE = "costbench"
#: Every run completes, so the cost compares modes, not failure rates.
COMPLETES = {"sim_outcome": "completed"}
#: An 8h window in 120 s of the real clock (a 2h one in 30 s, the Batch API's 24 h in 6 min).
DEFAULT_SCALE = 120 / (8 * 3600)
WINDOWS_S = {"2h": 2 * 3600.0, "8h": 8 * 3600.0, "batch": 24 * 3600.0}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.cost_modes", description=__doc__)
    parser.add_argument("--n", type=int, default=1000, help="runs per row")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    parser.add_argument("--time-scale", type=float, default=DEFAULT_SCALE)
    parser.add_argument(
        "--grace-s",
        type=float,
        default=30.0,
        help="a window's grace after its end, in real seconds (RUNS_WINDOW_GRACE_S / scale)",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--model", default="gpt-4.1-mini")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "cost_modes")
    return parser.parse_args(argv)


def setup(
    sim_url: str, redis_url: str, db_url: str, scale: float, grace_s: float
) -> dict[str, str]:
    return point_at(
        sim_url=sim_url,
        redis_url=redis_url,
        db_url=db_url,
        queue=QUEUE,
        settings="project.settings",
        OPENAI_WEBHOOK_SECRET="whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
        RUNS_TIME_SCALE=repr(scale),
        # The grace is scaled like the window, but our own latency (a queue, a busy machine) is
        # not: at 1/240 of the clock, 30 min of grace would be 7.5 s, less than a start can wait
        # behind 1,000 others. The bench keeps it at ``grace_s`` real seconds.
        RUNS_WINDOW_GRACE_S=repr(grace_s / scale),
    )


def one(
    mode: str, strategy: str, args: argparse.Namespace, sim: Any, redis_url: str, env: dict
) -> dict[str, Any]:
    """One row from a clean slate; its figures."""
    from project.celery import app
    from runs_dev import processes

    sim.reset(keep_config=True)
    redis.Redis.from_url(redis_url).flushdb()
    empty_tables()
    child = {**os.environ, **env, "RUNS_STRATEGY": strategy}
    started_procs = []
    try:
        if strategy == "webhook":
            web, base = processes.start_web(child)
            started_procs.append(web)
            sim.configure(
                webhook_url=f"{base}/webhooks/openai/",
                webhook_secret=env["OPENAI_WEBHOOK_SECRET"],
                webhook_delay_s=0.0,
            )
        else:
            sim.configure(webhook_url=None)
        started_procs += [
            processes.start_worker(child, concurrency=args.threads, queue=QUEUE)
            for _ in range(args.workers)
        ]
        started_procs.append(processes.start_beat(child, Path(tempfile.mkdtemp(prefix="cost-"))))
        wait_workers(app, args.workers)
        load = LoadWindow().start()
        started = time.time()
        run_ids = _start(mode, strategy, args)
        window = WINDOWS_S.get(mode)
        cap = (window * args.time_scale * 1.5 if window else 0) + 120 + args.n / 10
        ended = _wait_terminal(run_ids, started + cap)
        return _figures(mode, strategy, args, run_ids, started, ended, sim, load.stop())
    finally:
        for process in started_procs:
            processes.stop(process)


def _options(mode: str) -> dict[str, Any]:
    if mode == "flex":
        return {"service_tier": "flex"}
    if mode in ("2h", "8h"):
        return {"completion_window": mode}
    return {}


def _start(mode: str, strategy: str, args: argparse.Namespace) -> list[int]:
    """Create the runs as an application does, then start them all at once (or submit them as
    one batch)."""
    from django.db import transaction

    from runs.services import create_run, submit_batch
    from runs.tasks import start_run

    rng = random.Random(args.seed)
    durations = [round(rng.uniform(2.0, 8.0), 2) for _ in range(args.n)]
    with transaction.atomic():
        runs = [
            create_run(
                f"Summarise support ticket {i} in two sentences.",
                model=args.model,
                strategy=strategy,
                metadata={**COMPLETES, **({} if mode in WINDOWS_S else {"sim_duration_s": d})},
                **_options(mode),
            )
            for i, d in enumerate(durations)
        ]
        if mode == "batch":
            submit_batch(runs, strategy=strategy)
    if mode != "batch":
        for run in runs:
            start_run.delay(run.pk)
    return [run.pk for run in runs]


def _wait_terminal(run_ids: list[int], give_up: float) -> float:
    from runs.models import Run

    while time.time() < give_up:
        if not Run.objects.filter(pk__in=run_ids).active().exists():
            break
        time.sleep(0.5)
    return time.time()


def _figures(
    mode: str,
    strategy: str,
    args: argparse.Namespace,
    run_ids: list[int],
    started: float,
    ended: float,
    sim: Any,
    load: dict[str, Any],
) -> dict[str, Any]:
    from runs.models import Batch, Run

    rows = list(Run.objects.filter(pk__in=run_ids).values_list("status", "cost", "api_calls"))
    statuses = Counter(status for status, _c, _a in rows)
    costs = [c for _s, c, _a in rows if c is not None]
    total = sum(costs, Decimal(0))
    stats = sim.stats(objects=False)
    sim_calls = sum(int(v) for v in stats.get("calls", {}).values())
    ours = sum(a for *_, a in rows) + sum(Batch.objects.values_list("api_calls", flat=True))
    window = WINDOWS_S.get(mode)
    wall = ended - started
    return {
        "mode": mode,
        "strategy": strategy,
        "n": args.n,
        "statuses": dict(statuses),
        "ended": sum(v for k, v in statuses.items() if k != "pending"),
        "costed": len(costs),
        "cost_per_1000_usd": str((total / len(costs) * 1000).quantize(Decimal("0.0001")))
        if costs
        else None,
        "api_calls_per_run": round(sim_calls / args.n, 3),
        "api_calls_by_endpoint": stats.get("calls", {}),
        "our_api_calls_per_run": round(ours / args.n, 3),
        "wall_s": round(wall, 1),
        "window_s": window * args.time_scale if window else None,
        "wall_over_window": round(wall / (window * args.time_scale), 3) if window else None,
        "doubled_creates": sum(1 for v in stats.get("creates_by_run_id", {}).values() if v > 1),
        "load": load,
    }


def write(out: Path, results: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    scale = results["time_scale"]
    lines = [
        "# Cost and API calls per run, by mode",
        "",
        f"Generated by `python -m bench.cost_modes` ({results['database']}; "
        f"{results['workers']} workers x {results['threads']} threads; {results['n']} runs per "
        f"row, model {results['model']}, every run completing; time scale {scale:.6g}: an 8h "
        f"window lasts {8 * 3600 * scale:.0f} s, the Batch API's 24 h {24 * 3600 * scale:.0f} s).",
        "",
        "| mode | strategy | ended | cost / 1,000 runs | vs standard | API calls / run "
        "| wall | window | wall / window | load (1 min) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    base = {
        s["strategy"]: s["cost_per_1000_usd"]
        for s in results["scenarios"]
        if s["mode"] == "standard"
    }
    for s in results["scenarios"]:
        load = s["load"]
        cost = s["cost_per_1000_usd"]
        ref = base.get(s["strategy"])
        ratio = f"{Decimal(cost) / Decimal(ref):.2f}x" if cost and ref else "n/a"
        window = f"{s['window_s']:.0f} s" if s["window_s"] else "-"
        over = f"{s['wall_over_window']:.2f}" if s["wall_over_window"] is not None else "-"
        lines.append(
            f"| {s['mode']} | {s['strategy']} | {s['ended']}/{s['n']} "
            f"| ${cost if cost else 'n/a'} | {ratio} | {s['api_calls_per_run']} "
            f"| {s['wall_s']} s | {window} | {over} | {load['load1_start']} → {load['load1_end']}"
            f" on {load['cores']} cores {flag(load)} |"
        )
    for note in results.get("notes", []):
        lines += ["", note]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    if importlib.util.find_spec("matplotlib") is None:  # the bench extra (make bench-setup)
        print("matplotlib is not installed (pip install -e '.[bench]'): no PNG", file=sys.stderr)
        return
    _plot(out.with_suffix(".png"), results["scenarios"])


def _plot(path: Path, scenarios: list[dict[str, Any]]) -> None:
    """Cost per 1,000 runs and API calls per run, by mode, one bar per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = [m for m in MODES if any(s["mode"] == m for s in scenarios)]
    strategies = [t for t in STRATEGIES if any(s["strategy"] == t for s in scenarios)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / max(len(strategies), 1)
    for k, strategy in enumerate(strategies):
        by = {s["mode"]: s for s in scenarios if s["strategy"] == strategy}
        xs = [i + k * width for i in range(len(modes))]
        costs = [float(by[m]["cost_per_1000_usd"] or 0) if m in by else 0 for m in modes]
        calls = [by[m]["api_calls_per_run"] if m in by else 0 for m in modes]
        left.bar(xs, costs, width, label=strategy)
        right.bar(xs, calls, width, label=strategy)
    for axis, title in ((left, "USD per 1,000 runs"), (right, "API calls per run")):
        axis.set_xticks([i + width * (len(strategies) - 1) / 2 for i in range(len(modes))])
        axis.set_xticklabels(modes)
        axis.set_title(title)
        axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


NOTES = [
    "API calls per run are counted by the simulator (every /v1 request, divided by the runs): a "
    "run by webhook or by polling also creates its conversation (1 call) before its response; a "
    "batch's calls are one upload, one create, its retrieves and one download per file (the "
    "error file exists only when a line failed), shared by all its runs.",
    "Costs are the simulator's usage priced by runs/pricing.py: its answers are short, so the "
    "dollars are small; the ratio against standard processing is the figure to read.",
    "A window's grace (RUNS_WINDOW_GRACE_S, 30 min by default) is scaled like the window, but "
    "our own latency is not: the bench keeps it at 30 real seconds (--grace-s), so a run is not "
    "expired for a queueing delay that the compressed clock makes look like half an hour.",
    "By polling, standard and flex runs (2-8 s at the simulator) are seen with few retrieves "
    "here: 1,000 starts take longer than most runs last, so a run's first poll often finds it "
    "ended. The schedule's own count for such a run is 4-8 retrieves (docs/modes.md).",
    "The windows' wall time depends on when the simulator finishes each run inside its window "
    "(uniformly between 5 % and 60 % of it, scaled) and is counted from the first enqueue: the "
    "2h window lasts 30 s here, less than starting 1,000 runs takes on 2 cores, hence a ratio "
    "above 1 there; every run still ended inside its own window, counted from its create.",
]


def main(argv: list[str] | None = None) -> int:
    from runs_simulator.testing import RunningSimulator

    args = parse_args(argv)
    db_url, db_note = choose_url()
    if vendor(db_url) != "postgresql":
        print(f"needs PostgreSQL: {db_note}", file=sys.stderr)
        return 2
    private = start_private_redis()
    scenarios = []
    try:
        with RunningSimulator() as sim:
            sim.configure(time_scale=args.time_scale)
            env = setup(sim.base_url, private.url, db_url, args.time_scale, args.grace_s)
            for mode in args.modes:
                for strategy in args.strategies:
                    print(f"{mode} by {strategy}, N = {args.n} ...", flush=True)
                    scenarios.append(one(mode, strategy, args, sim, private.url, env))
                    print(json.dumps(scenarios[-1]), flush=True)
    finally:
        private.stop()
    results = {
        "database": db_note,
        "workers": args.workers,
        "threads": args.threads,
        "n": args.n,
        "model": args.model,
        "time_scale": args.time_scale,
        "grace_s": args.grace_s,
        "scenarios": scenarios,
        "notes": NOTES,
    }
    write(args.out, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
