"""Start throughput against a bare SDK loop, side by side: ``python -m bench.start_rate``.

Issue 13 asks that starting runs through Celery keep at least half the pace of the simplest
thing that could work: a loop of the same two SDK calls (a conversation, then a background
response in it) from 16 threads. Both sides talk to the same simulator, in the same invocation:

* **bare**: 16 threads share N starts, each one ``conversations.create`` + ``responses.create``
  through the real ``openai`` SDK; the rate is N over the time from the first call to the last
  answer.
* **ours**: ``create_run`` for N runs (before the clock starts, as an application would have
  them), then ``start_run.delay`` for each, consumed by 2 worker processes of 8 threads; the
  rate is N over the time from the first enqueue to the last run's ``submitted_at`` (its create
  answered and saved, claim and all). Once by webhook (a start arms only a safety-net poll 30 s
  out, so starts alone are measured: the issue's row) and once by polling (the early runs'
  first polls, due 0.5 s after their start, compete with the later starts). Each strategy
  once per ``--chunks`` value: ``RUNS_START_CHUNK`` 16 (the bench's default: a start takes
  waiting runs in chunks) and 1 (each run in its own task, the app's default); and once per
  ``--poll-modes`` value (``MODES``): ``default`` (the app's settings: a webhook run's safety
  net is a due time, so its start publishes nothing), ``per_run`` (each start publishes its
  run's first poll, a countdown task its worker receives at once and holds) or ``batched``
  (no start publishes one; beat's ``runs.poll_due`` would find the due runs, and no beat runs
  here, since no run is due within the measured window).

Each pair measures the bare loop again just before ours, so each ratio has its own baseline.
With ``--repeats R`` every row is measured R times, the rows taking turns (round 1 of every row,
then round 2...), and reported by the pair with the median ratio, every pair's ratio listed
beside it: on a loaded 2-core host two rows running the same code (webhook runs, whose safety
nets are polled by due time with either ``default`` or ``batched``) once read 0.58x and 0.40x
in the same invocation (docs/bench/README.md, "The start rate: the median of three pairs").

Every run is a long one (the simulator pins it at 600 s and the bench cancels nothing): only
starting is measured, and no poll competes with the starts for the workers. PostgreSQL (database
``runs_bench_start``), a private Redis as the broker. Writes ``docs/bench/start_rate.{json,md}``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("BENCH_DB_NAME", "runs_bench_start")

from project.localredis import start_private_redis  # noqa: E402

from . import stats  # noqa: E402
from .database import choose_url, empty_tables, vendor  # noqa: E402
from .load import LoadWindow, flag  # noqa: E402
from .standalone import point_at, wait_workers  # noqa: E402

QUEUE = "startbench"
#: ``--poll-modes``: the settings each row's workers get (none: the app's defaults).
MODES: dict[str, dict[str, str]] = {
    "default": {},
    "per_run": {"RUNS_POLL_MODE": "per_run", "RUNS_SAFETY_NET_MODE": "per_run"},
    "batched": {"RUNS_POLL_MODE": "batched", "RUNS_SAFETY_NET_MODE": "batched"},
}
LONG = {"sim_duration_s": "600", "sim_outcome": "completed"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.start_rate", description=__doc__)
    parser.add_argument("--n", type=int, nargs="+", default=[1000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--bare-threads", type=int, default=16)
    parser.add_argument(
        "--strategies",
        nargs="+",
        choices=("webhook", "poll"),
        default=["webhook", "poll"],
        help="webhook: no poll competes with the starts (the issue's row); poll: the first "
        "polls of the early runs do",
    )
    parser.add_argument(
        "--chunks",
        type=int,
        nargs="+",
        default=[16, 1],
        help="RUNS_START_CHUNK values, each a row of its own: 16 (the default) takes waiting "
        "runs in chunks, 1 starts each run in its own task",
    )
    parser.add_argument(
        "--poll-modes",
        nargs="+",
        choices=tuple(MODES),
        default=["default"],
        help="each a row of its own: default (the demo project's: RUNS_POLL_MODE auto, "
        "RUNS_SAFETY_NET_MODE batched, so a start by webhook publishes no poll); per_run (both "
        "per_run: each start publishes its run's first poll, a countdown task); batched (both "
        "batched: no start publishes one, beat's runs.poll_due would find due runs)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="pairs per row, taking turns with the other rows; each row is reported by the "
        "pair with the median ratio",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "start_rate")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if "poll" in args.strategies and "batched" in args.poll_modes:
        # No beat runs here: a run by polling would never be polled, so nothing would compete
        # with the starts, which is what the polling row is for.
        parser.error("--strategies poll measures polls competing with starts: per_run only")
    return args


def setup(sim_url: str, redis_url: str, db_url: str) -> dict[str, str]:
    return point_at(
        sim_url=sim_url,
        redis_url=redis_url,
        db_url=db_url,
        queue=QUEUE,
        settings="project.settings",
    )


def bare(n: int, threads: int, sim_url: str) -> dict[str, Any]:
    """N starts by a plain loop of the two SDK calls, shared by ``threads`` threads."""
    from openai import OpenAI

    client = OpenAI(base_url=sim_url, api_key="sk-bench-simulator", max_retries=0)

    def start(i: int) -> None:
        conversation = client.conversations.create(metadata={"bench": str(i)})
        client.responses.create(
            model="gpt-4.1-mini",
            conversation=conversation.id,
            background=True,
            store=True,
            metadata={**LONG, "run_id": f"bare-{i}"},
            input=[{"type": "message", "role": "user", "content": f"bench {i}"}],
        )

    load = LoadWindow().start()
    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(start, range(n)))
    elapsed = time.perf_counter() - began
    return {"side": "bare SDK loop", "n": n, "threads": threads, "elapsed_s": round(elapsed, 2),
            "starts_per_s": round(n / elapsed, 1), "load": load.stop()}  # fmt: skip


def ours(
    n: int,
    args: argparse.Namespace,
    redis_url: str,
    env: dict,
    strategy: str,
    chunk: int,
    poll_mode: str = "default",
) -> dict[str, Any]:
    """N starts through ``start_run.delay`` and the workers, by ``strategy``, with
    ``RUNS_START_CHUNK = chunk`` and the poll settings of ``MODES[poll_mode]``."""
    from django.db import transaction

    from project.celery import app
    from runs.models import Run
    from runs.services import create_run
    from runs.tasks import start_run
    from runs_dev import processes

    redis.Redis.from_url(redis_url).flushdb()
    empty_tables()
    with transaction.atomic():
        ids = [create_run(f"bench {i}", metadata=LONG, strategy=strategy).pk for i in range(n)]
    child = {**os.environ, **env, "RUNS_START_CHUNK": str(chunk), **MODES[poll_mode]}
    for name in ("RUNS_POLL_MODE", "RUNS_SAFETY_NET_MODE"):
        if name not in MODES[poll_mode]:
            child.pop(name, None)  # the app's default, whatever this shell has
    workers = [
        processes.start_worker(child, concurrency=args.threads, queue=QUEUE)
        for _ in range(args.workers)
    ]
    try:
        wait_workers(app, args.workers)
        load = LoadWindow().start()
        cpu_before = _cpu_s(workers)
        began = time.time()
        for run_id in ids:
            start_run.delay(run_id)
        deadline = began + 120 + n / 5
        while time.time() < deadline:
            if not Run.objects.filter(pk__in=ids, submitted_at__isnull=True).exists():
                break
            time.sleep(0.2)
        done = Run.objects.filter(pk__in=ids, submitted_at__isnull=False)
        submitted = done.count()
        # A start still waiting at the deadline is reported (submitted < n), not a crash.
        last = max(done.values_list("submitted_at", flat=True), default=None)
        cpu = _cpu_s(workers) - cpu_before
    finally:
        for process in workers:
            processes.stop(process)
    elapsed = last.timestamp() - began if submitted else float("inf")
    side = f"start_run.delay + workers ({strategy}, chunk {chunk}, {poll_mode})"
    return {"side": side, "strategy": strategy, "n": n, "submitted": submitted, "chunk": chunk,
            "poll_mode": poll_mode,
            "threads": args.workers * args.threads, "elapsed_s": round(elapsed, 2),
            "starts_per_s": round(submitted / elapsed, 1), "load": load.stop(),
            "worker_cpu_ms_per_start": round(cpu / submitted * 1000, 2) if submitted else None,
            }  # fmt: skip


def _cpu_s(workers: list[Any]) -> float:
    """The worker processes' CPU so far (user + system, their children included).

    Taken at the first enqueue and when the bench sees the last start saved (it looks every
    0.2 s), so ``worker_cpu_ms_per_start`` is the workers' CPU in that window over the starts:
    everything they did meanwhile, which in this bench is starting runs. A noisy machine moves
    it far less than the rate. A process gone meanwhile counts for nothing.
    """
    from .sampling import cpu_s  # psutil: the bench extra

    return cpu_s([worker.pid for worker in workers])


def write(out: Path, results: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Start throughput: start_run through Celery against a bare SDK loop",
        "",
        f"Generated by `{results.get('command', 'python -m bench.start_rate')}` "
        f"({results['database']}). Each start is "
        "`conversations.create` + `responses.create` against the simulator; ours adds the claim, "
        "the saves and the broker. Same invocation, side by side.",
        "",
        "| N | side | slots | starts/s | elapsed | ratio (ours / bare) | worker CPU per start "
        "| load (1 min) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for pair in results["pairs"]:
        b, o = pair["bare"], pair["ours"]
        ratio = o["starts_per_s"] / b["starts_per_s"] if b["starts_per_s"] else 0
        if o["submitted"] < o["n"]:
            ratio_note = f"**{ratio:.2f}x, only {o['submitted']} of {o['n']} started**"
        else:
            ratio_note = f"**{ratio:.2f}x**"
        if len(pair.get("pair_ratios", [])) > 1:
            each = stats.ratios_text(pair["pair_ratios"])
            ratio_note += f" (median of {len(pair['pair_ratios'])} pairs: {each})"
        for row, r in ((b, ""), (o, ratio_note)):
            load = row["load"]
            cpu = row.get("worker_cpu_ms_per_start")
            lines.append(
                f"| {row['n']} | {row['side']} | {row['threads']} threads | {row['starts_per_s']} "
                f"| {row['elapsed_s']} s | {r} | {'–' if cpu is None else f'{cpu} ms'} "
                f"| {load['load1_start']} → {load['load1_end']} on {load['cores']} cores "
                f"{flag(load)} |"
            )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    from runs_simulator.testing import RunningSimulator

    args = parse_args(argv)
    db_url, db_note = choose_url()
    if vendor(db_url) != "postgresql":
        print(f"needs PostgreSQL: {db_note}", file=sys.stderr)
        return 2
    private = start_private_redis()
    rows = list(itertools.product(args.n, args.strategies, args.chunks, args.poll_modes))
    measured: dict[tuple[Any, ...], list[dict[str, Any]]] = {row: [] for row in rows}
    try:
        with RunningSimulator() as sim:
            env = setup(sim.base_url, private.url, db_url)
            for _ in range(args.repeats):
                for row in rows:
                    n, strategy, chunk, mode = row
                    sim.reset(keep_config=True)
                    pair = {"bare": bare(n, args.bare_threads, sim.base_url)}
                    sim.reset(keep_config=True)
                    pair["ours"] = ours(n, args, private.url, env, strategy, chunk, mode)
                    pair["ratio"] = pair_ratio(pair)
                    print(json.dumps(pair), flush=True)
                    measured[row].append(pair)
    finally:
        private.stop()
    command = " ".join(
        ["python -m bench.start_rate", *(argv if argv is not None else sys.argv[1:])]
    )
    pairs = [stats.reported_pair(measured[row]) for row in rows]
    write(args.out, {"command": command, "database": db_note, "repeats": args.repeats,
                     "pairs": pairs})  # fmt: skip
    return 0


def pair_ratio(pair: dict[str, Any]) -> float | None:
    """Ours over the bare loop, or None when the bare loop measured nothing."""
    bare_rate = pair["bare"]["starts_per_s"]
    return round(pair["ours"]["starts_per_s"] / bare_rate, 3) if bare_rate else None


if __name__ == "__main__":
    raise SystemExit(main())
