"""Per-run countdowns against batched polling, side by side: ``python -m bench.batch_vs_per_run``.

Same workload for every mode (runs of 5-20 s, uniform, seeded; by poll, no webhooks; all
enqueued at once, or with ``--spread-s`` created and enqueued one by one, evenly over that many
seconds, as an application's users would), same deployment: the simulator, a private Redis as
the broker, PostgreSQL (its own database, ``runs_bench_batch``, so a concurrent ``make bench``
is not disturbed), 2 worker processes of 8 threads (``bench.celery_app``: the project's app plus
a per-task probe) and beat (the sweep, and ``runs.poll_due`` where a mode needs it). For each
mode and N it records

* queries per retrieve: statements sent by poll tasks (``runs.poll_run``/``runs.poll_due``),
  counted by the probe around each task, over the retrieves the simulator served;
* worker CPU per retrieve: the worker processes' CPU (user + system, every thread) less the CPU
  of the start tasks, over the retrieves (so the sweep and an idle worker's own cost are in it);
* retrieves per run, and detection lateness: our row terminal minus the simulator's terminal
  moment, p50/p99/max;
* runs handed to the batches (``Run.poll_by_due``): in "auto", the runs whose start or a poll
  ran late; in "batched", every run;
* the 1-minute load average at start and end, with the core count.

Writes ``docs/bench/batch_polling.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("BENCH_DB_NAME", "runs_bench_batch")

from project.localredis import start_private_redis  # noqa: E402
from runs.poll_modes import MODES  # noqa: E402

from .database import choose_url, empty_tables, vendor  # noqa: E402
from .load import LoadWindow, flag  # noqa: E402
from .sampling import cpu_s  # noqa: E402
from .standalone import point_at, wait_workers  # noqa: E402
from .stats import summarize  # noqa: E402

QUEUE = "batchbench"
POLL_TASKS = ("runs.poll_run", "runs.poll_due")
#: Every run completes: the comparison is about finding the end, not about failures.
COMPLETES = {"sim_outcome": "completed"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.batch_vs_per_run", description=__doc__)
    parser.add_argument("--n", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--min-s", type=float, default=5.0)
    parser.add_argument("--max-s", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument(
        "--spread-s",
        type=float,
        default=0.0,
        help="create and enqueue the runs evenly over this many seconds (0: all at once)",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="the simulator's added latency per request (a real API answers in tens of ms)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "batch_polling")
    args = parser.parse_args(argv)
    if not 0 <= args.latency_ms <= 60_000:
        parser.error("--latency-ms must be within 0-60000 (the simulator's own bounds)")
    if args.spread_s < 0:
        parser.error("--spread-s must be 0 (all at once) or more")
    return args


def setup(sim_url: str, redis_url: str, db_url: str) -> dict[str, str]:
    """Point this process and its children at the bench's services; set Django up."""
    return point_at(
        sim_url=sim_url, redis_url=redis_url, db_url=db_url, queue=QUEUE, settings="bench.settings"
    )


def one(n: int, mode: str, args: argparse.Namespace, sim: Any, redis_url: str, env: dict) -> dict:
    """One scenario from a clean slate; its figures."""
    from runs_dev import processes

    from .celery_app import FAILURES_KEY, LATENESS_KEY, app

    sim.reset(keep_config=True)
    sim.configure(latency_s=args.latency_ms / 1000)
    redis.Redis.from_url(redis_url).flushdb()
    empty_tables()
    child = {**os.environ, **env, "RUNS_POLL_MODE": mode}
    load = LoadWindow().start()
    workers = [
        processes.start_worker(child, concurrency=args.threads, queue=QUEUE, app="bench.celery_app")
        for _ in range(args.workers)
    ]
    beat_dir = Path(tempfile.mkdtemp(prefix="batchbench-beat-"))
    beat = processes.start_beat(child, beat_dir)
    try:
        wait_workers(app, len(workers))
        rng = random.Random(args.seed + n)
        durations = [round(rng.uniform(args.min_s, args.max_s), 2) for _ in range(n)]
        started = time.time()
        run_ids = _start(durations, args.spread_s)
        cap = max(durations) + 60 + n / 10 + args.spread_s
        ended = _wait_terminal(run_ids, started + cap)
        cpu = _cpu(workers)
    finally:
        for process in (*workers, beat):
            processes.stop(process)
    r = redis.Redis.from_url(redis_url)
    tasks = _task_totals(r.lrange(LATENESS_KEY, 0, -1))
    failures = [f.decode() for f in r.lrange(FAILURES_KEY, 0, -1)]
    return _figures(n, mode, durations, started, ended, cpu, tasks, failures, sim, load.stop())


def _start(durations: list[float], spread_s: float) -> list[int]:
    """Create the runs as an application does, then enqueue every start at once; or, spread,
    create and enqueue each at its moment (a run created long before its start would be judged
    late by "auto", as it should be when the workers are behind)."""
    from django.db import transaction

    from runs.services import create_run
    from runs.tasks import start_run

    def create(i: int, d: float) -> int:
        return create_run(f"bench {i}", metadata={"sim_duration_s": str(d), **COMPLETES}).pk

    if spread_s <= 0:
        with transaction.atomic():
            ids = [create(i, d) for i, d in enumerate(durations)]
        for run_id in ids:
            start_run.delay(run_id)
        return ids
    ids, began, gap = [], time.monotonic(), spread_s / len(durations)
    for i, d in enumerate(durations):
        time.sleep(max(0.0, began + i * gap - time.monotonic()))
        ids.append(create(i, d))
        start_run.delay(ids[-1])
    return ids


def _wait_terminal(run_ids: list[int], give_up: float) -> float:
    """Until every run is terminal (or the cap); the moment the last one was."""
    from runs.models import Run

    while time.time() < give_up:
        if not Run.objects.filter(pk__in=run_ids).active().exists():
            break
        time.sleep(0.5)
    return time.time()


def _cpu(workers: list[Any]) -> float:
    """User + system CPU seconds of the worker processes and their children so far."""
    return cpu_s([w.pid for w in workers])


def _task_totals(records: list[bytes]) -> dict[str, dict[str, float]]:
    """Per task name: count, CPU of the task's thread, queries (the probe's records)."""
    totals: dict[str, dict[str, float]] = defaultdict(lambda: {"count": 0, "cpu_s": 0, "q": 0})
    for raw in records:
        name, _lateness, _wall, cpu, queries, _host = raw.decode().split(",", 5)
        t = totals[name]
        t["count"] += 1
        t["cpu_s"] += float(cpu)
        t["q"] += int(queries)
    return dict(totals)


def _figures(n, mode, durations, started, ended, cpu, tasks, failures, sim, load) -> dict:
    from runs.models import Run

    objects = sim.stats()["objects"]
    rows = list(Run.objects.values_list("status", "remote_id", "completed_at", "polls"))
    handed = Run.objects.filter(poll_by_due=True).count()
    late = [
        c.timestamp() - float(objects[rid]["terminal_at"])
        for _s, rid, c, _p in rows
        if c is not None and objects.get(rid, {}).get("terminal_at") is not None
    ]
    retrieves = sum(int(o.get("retrieve", 0)) for o in objects.values())
    poll_q = sum(tasks.get(t, {}).get("q", 0) for t in POLL_TASKS)
    start_cpu = tasks.get("runs.start_run", {}).get("cpu_s", 0.0)
    statuses: dict[str, int] = defaultdict(int)
    for status, *_ in rows:
        statuses[status] += 1
    return {
        "mode": mode,
        "n": n,
        "ended": sum(v for k, v in statuses.items() if k in ("completed", "failed", "incomplete")),
        "statuses": dict(statuses),
        "doubled_creates": sum(1 for v in sim.stats()["creates_by_run_id"].values() if v > 1),
        "task_errors": len(failures),
        "retrieves": retrieves,
        "retrieves_per_run": round(retrieves / n, 2),
        "counted_polls": sum(p for *_, p in rows),
        "handed_to_batches": handed,
        "poll_queries_per_retrieve": round(poll_q / retrieves, 3) if retrieves else None,
        "worker_cpu_s": round(cpu, 2),
        "start_task_cpu_s": round(start_cpu, 2),
        "poll_cpu_ms_per_retrieve": round((cpu - start_cpu) / retrieves * 1000, 2)
        if retrieves
        else None,
        "tasks": {
            k: {"count": int(v["count"]), "queries": int(v["q"]), "cpu_s": round(v["cpu_s"], 3)}
            for k, v in tasks.items()
        },
        "detection_s": summarize(late, digits=3),
        "longest_run_s": max(durations),
        "all_ended_after_s": round(ended - started, 1),
        "load": load,
    }


def _arrivals(results: dict[str, Any]) -> str:
    spread, latency = results.get("spread_s") or 0, results.get("latency_ms") or 0
    how = f"created and enqueued evenly over {spread:g} s" if spread else "all enqueued at once"
    return how + (f", the simulator {latency:g} ms slower per request" if latency else "")


def write(out: Path, results: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Batched polling against per-run countdowns",
        "",
        f"Generated by `python -m bench.batch_vs_per_run` ({results['database']}; "
        f"{results['workers']} workers x {results['threads']} threads, runs of "
        f"{results['min_s']:g}-{results['max_s']:g} s, by poll, {_arrivals(results)}).",
        "",
        "| N | mode | ended | retrieves/run | poll queries/retrieve | worker CPU/retrieve "
        "| detection p50 / p99 / max | all ended after | handed to batches | load (1 min) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in results["scenarios"]:
        d = s["detection_s"]
        load = s["load"]
        lines.append(
            f"| {s['n']} | {s['mode']} | {s['ended']}/{s['n']} | {s['retrieves_per_run']} "
            f"| {s['poll_queries_per_retrieve']} | {s['poll_cpu_ms_per_retrieve']} ms "
            f"| {d['p50']} / {d['p99']} / {d['max']} s | {s['all_ended_after_s']} s "
            f"(longest run {s['longest_run_s']} s) | {s.get('handed_to_batches', '–')} "
            f"| {load['load1_start']} → {load['load1_end']}"
            f" on {load['cores']} cores {flag(load)} |"
        )
    lines += ["", *comparison(results["scenarios"])]
    for note in results.get("notes", []):
        lines += ["", note]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


#: The pairs compared, each ``(mode, against)``: below 1, ``mode`` spends less.
PAIRS = (("batched", "per_run"), ("auto", "per_run"), ("auto", "batched"))


def comparison(scenarios: list[dict[str, Any]]) -> list[str]:
    """Each mode over another at each N, as ratios (below 1: the first spends less)."""
    by = {(s["n"], s["mode"]): s for s in scenarios}
    lines = []
    for mode, against in PAIRS:
        found = []
        for n in sorted({s["n"] for s in scenarios}):
            b, p = by.get((n, mode)), by.get((n, against))
            if not (b and p):
                continue

            def ratio(key: str, b: dict = b, p: dict = p) -> str:
                return f"{b[key] / p[key]:.2f}x" if b[key] and p[key] else "n/a"

            found.append(
                f"- N = {n}: queries per retrieve {ratio('poll_queries_per_retrieve')}, worker "
                f"CPU per retrieve {ratio('poll_cpu_ms_per_retrieve')}, retrieves per run "
                f"{ratio('retrieves_per_run')}; detection p50 {b['detection_s']['p50']} s "
                f"against {p['detection_s']['p50']} s, p99 {b['detection_s']['p99']} s against "
                f"{p['detection_s']['p99']} s."
            )
        if found:
            lines += [*([""] if lines else []), f"{mode.capitalize()} / {against}, same N:", ""]
            lines += found
    return lines


def main(argv: list[str] | None = None) -> int:
    from runs_simulator.testing import RunningSimulator

    args = parse_args(argv)
    db_url, db_note = choose_url()
    if vendor(db_url) != "postgresql":
        print(f"needs PostgreSQL for a fair comparison: {db_note}", file=sys.stderr)
        return 2
    private = start_private_redis()
    try:
        with RunningSimulator() as sim:
            env = setup(sim.base_url, private.url, db_url)
            scenarios = []
            for n in args.n:
                for mode in args.modes:
                    print(f"N = {n}, {mode} ...", flush=True)
                    scenarios.append(one(n, mode, args, sim, private.url, env))
                    print(json.dumps(scenarios[-1]), flush=True)
    finally:
        private.stop()
    results = {
        "database": db_note,
        "workers": args.workers,
        "threads": args.threads,
        "min_s": args.min_s,
        "max_s": args.max_s,
        "spread_s": args.spread_s,
        "latency_ms": args.latency_ms,
        "scenarios": scenarios,
    }
    write(args.out, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
