"""Tick rate: a real poll tick against a bare Celery countdown task, same workers, same run.

Why this baseline: a poll tick is a countdown task that retrieves the run over HTTP, writes the
answer and arms the next tick. The bare task (``bench.bare_tick``) does only the last part: it
re-enqueues itself with the same countdown. Its rate is what Celery and the broker can do on these
workers; the ratio says how much of that our tick keeps (aim >= 0.4x).

How: the same worker processes (same slots, same broker) first run ``chains`` bare chains, then
``chains`` runs in progress at the simulator whose poll schedule is set to the same countdown
(``RUNS_POLL_BASE_S`` = ``RUNS_POLL_CAP_S`` = the countdown, factor 1, no jitter), so each run is
a chain of back-to-back real ticks. Each rate is counted over a steady window after a warm-up,
from the probe's records; the simulator's retrieve count over the window shows every poll tick
was a real retrieve (about 1.0 per tick). CPU per tick is the worker processes' CPU over the
window divided by the ticks; queries per tick come from the probe (bench/celery_app.py).
"""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack
from typing import Any

import redis

from . import processes, stats
from .celery_app import LATENESS_KEY
from .load import LoadWindow
from .sampling import ProcessSampler
from .scenario import Bench, _create_runs, _probe_records
from .workload import Plan

#: The countdown both kinds of tick use: due at once, but through the broker's countdown path.
COUNTDOWN_S = 0.001
BARE = "bench.bare_tick"
POLL = "runs.poll_run"


def _count(redis_url: str, name: str) -> int:
    return sum(
        1
        for item in redis.Redis.from_url(redis_url).lrange(LATENESS_KEY, 0, -1)
        if item.decode().split(",", 1)[0] == name
    )


def _tick_env(bench: Bench, **extra: str) -> dict[str, str]:
    """The workers' environment: every run polled by ``COUNTDOWN_S``, flat (no backoff, no
    jitter), so each run is a chain of back-to-back ticks."""
    schedule = str(COUNTDOWN_S)
    return processes.child_env(
        bench.env,
        RUNS_STRATEGY="poll",
        RUNS_POLL_BASE_S=schedule,
        RUNS_POLL_CAP_S=schedule,
        RUNS_POLL_FACTOR="1",
        RUNS_POLL_JITTER="0",
        DATABASE_URL=bench.worker_db_url or bench.env["DATABASE_URL"],
        **extra,
    )


def _retrieves(bench: Bench) -> int:
    return int(bench.sim.stats(objects=False)["calls"].get("responses.retrieve", 0))


def _window(
    bench: Bench, procs: ProcessSampler, name: str, warmup_s: float, window_s: float
) -> dict[str, Any]:
    """Ticks of task ``name`` per second over ``window_s``, after ``warmup_s``."""
    time.sleep(warmup_s)
    procs.sample()
    cpu0 = procs.usage["worker"].cpu_s
    ticks0 = _count(bench.redis_url, name)
    retrieves0 = _retrieves(bench)
    t0 = time.monotonic()
    time.sleep(window_s)
    procs.sample()
    elapsed = time.monotonic() - t0
    ticks = _count(bench.redis_url, name) - ticks0
    retrieves = _retrieves(bench) - retrieves0
    cpu = procs.usage["worker"].cpu_s - cpu0
    return {
        "ticks": ticks,
        "window_s": round(elapsed, 2),
        "ticks_per_s": round(ticks / elapsed, 1),
        "worker_cpu_ms_per_tick": round(cpu / ticks * 1000, 2) if ticks else None,
        "worker_cpu_share": round(cpu / elapsed, 2),
        "retrieves_per_tick": round(retrieves / ticks, 3) if ticks else None,
    }


def measure(
    bench: Bench,
    *,
    chains: int,
    warmup_s: float = 2.0,
    window_s: float = 10.0,
    batched_runs: int = 0,
    repeats: int = 3,
) -> dict[str, Any]:
    """Both rates on the same ``bench.workers`` x ``bench.threads`` workers, and their ratio:
    ``repeats`` pairs (fresh workers each, the bare task measured again just before each poll
    window), reported by the pair with the median ratio, every pair listed beside it. One pair
    moved between 0.29x and 0.43x on the same code on a loaded 2-core host (docs/bench/README.md,
    "A poll's "not yet" answer"); the median of paired ratios holds still where one pair cannot.
    """
    repeats = max(1, repeats)
    task = bench.progress.add_task(
        "tick rate: bare countdown task, then a real poll tick", total=2 * repeats
    )
    pairs = [_pair(bench, chains, warmup_s, window_s, task) for _ in range(repeats)]
    median = stats.median_pair(pairs)
    bare = median["bare"]
    # The batched row runs on workers of its own: its baseline is the pairs' median bare rate.
    bare_rates = sorted(p["bare"]["ticks_per_s"] for p in pairs)
    bare_median = bare_rates[(len(bare_rates) - 1) // 2]
    batched = measure_batched(bench, runs=batched_runs, window_s=window_s) if batched_runs else None
    return {
        "workers": bench.workers,
        "threads": bench.threads,
        "chains": chains,
        "countdown_s": COUNTDOWN_S,
        "simulator_latency_s": 0.0,
        "bare": bare,
        "poll": median["poll"],
        "ratio": median["ratio"],
        "aim": 0.4,
        "met": median["ratio"] is not None and median["ratio"] >= 0.4,
        "repeats": len(pairs),
        "pair_ratios": [p["ratio"] for p in pairs],
        "pairs": pairs,
        "batched": batched,
        "batched_bare_ticks_per_s": bare_median,
        "batched_ratio": round(batched["ticks_per_s"] / bare_median, 3)
        if batched and bare_median
        else None,
        "load": median["load"],
    }


def _pair(bench: Bench, chains: int, warmup_s: float, window_s: float, task: Any) -> dict[str, Any]:
    """One bare window, then one poll window, on fresh workers; their ratio and the load."""
    from project.celery import app
    from runs.tasks import start_run

    from .celery_app import bare_tick

    # The per-run tick: countdowns only (with no beat here, "auto" would strand a late chain).
    env = _tick_env(bench, RUNS_POLL_MODE="per_run")
    procs = ProcessSampler()
    with ExitStack() as stack:
        bench.clean_slate()
        workers = processes.start_workers(
            stack,
            env,
            workers=bench.workers,
            threads=bench.threads,
            tag="tick",
            logdir=bench.workdir,
        )
        processes.wait_workers(app, workers)
        for process, _ in workers:
            procs.watch("worker", process.pid)
        procs.baseline()
        load = LoadWindow().start()
        until = time.time() + warmup_s + window_s + 1
        for chain in range(chains):
            bare_tick.apply_async((chain, until, COUNTDOWN_S), countdown=COUNTDOWN_S)
        bare = _window(bench, procs, BARE, warmup_s, window_s)
        bench.progress.advance(task)
        time.sleep(max(0.0, until - time.time()) + 1.0)  # the bare chains stop by themselves
        plans = [Plan(i, 3600.0, "completed") for i in range(chains)]
        for run_id in _create_runs(plans, "poll"):
            start_run.delay(run_id)
        poll = _window(bench, procs, POLL, warmup_s, window_s)
        bench.progress.advance(task)
        probe = _probe_records(bench.redis_url).get("poll_run", {})
    ratio = round(poll["ticks_per_s"] / bare["ticks_per_s"], 3) if bare["ticks_per_s"] else None
    poll |= {
        "queries_per_tick": probe.get("queries_mean"),
        "task_cpu_ms_p50": (probe.get("cpu_ms") or {}).get("p50"),
        "task_wall_ms_p50": (probe.get("wall_ms") or {}).get("p50"),
    }
    return {"bare": bare, "poll": poll, "ratio": ratio, "load": load.stop()}


def measure_batched(bench: Bench, *, runs: int, window_s: float) -> dict[str, Any]:
    """Ticks per second in batched polling mode (``RUNS_POLL_MODE = "batched"``) on the same
    workers: ``runs`` runs in progress, all due again as soon as they are written, so every
    ``runs.poll_due`` comes back full and hands on to the next; a tick is one retrieve and its
    share of the batch's claim and write. This process sends ``runs.poll_due`` every 0.5 s, as
    beat would. The rate is the simulator's retrieves per second over the window."""
    from runs.engine import enqueue
    from runs.engine.batch_poll import POLL_DUE
    from runs.models import Run
    from runs.tasks import start_run

    # Chunked starts only get the runs going sooner; the window starts once all are.
    env = _tick_env(bench, RUNS_POLL_MODE="batched", RUNS_START_CHUNK="16")
    procs = ProcessSampler()
    with ExitStack() as stack:
        bench.clean_slate()
        from project.celery import app

        workers = processes.start_workers(
            stack, env, workers=bench.workers, threads=bench.threads, tag="batched",
            logdir=bench.workdir,
        )  # fmt: skip
        processes.wait_workers(app, workers)
        for process, _ in workers:
            procs.watch("worker", process.pid)
        ids = _create_runs([Plan(i, 3600.0, "completed") for i in range(runs)], "poll")
        for run_id in ids:
            start_run.delay(run_id)
        deadline = time.monotonic() + 120
        while Run.objects.filter(remote_id="").exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        stop = time.monotonic() + 2.0 + window_s + 2.0
        procs.baseline()

        def beat() -> None:
            while time.monotonic() < stop:
                enqueue.send(POLL_DUE, kind="poll")
                time.sleep(0.5)

        load = LoadWindow().start()
        ticker = threading.Thread(target=beat, daemon=True)
        ticker.start()
        time.sleep(2.0)
        procs.sample()
        cpu0 = procs.usage["worker"].cpu_s
        retrieves0 = _retrieves(bench)
        t0 = time.monotonic()
        time.sleep(window_s)
        procs.sample()
        elapsed = time.monotonic() - t0
        retrieves = _retrieves(bench) - retrieves0
        cpu = procs.usage["worker"].cpu_s - cpu0
        ticker.join()
    return {
        "runs": runs,
        "ticks": retrieves,
        "window_s": round(elapsed, 2),
        "ticks_per_s": round(retrieves / elapsed, 1),
        "worker_cpu_ms_per_tick": round(cpu / retrieves * 1000, 2) if retrieves else None,
        "worker_cpu_share": round(cpu / elapsed, 2),
        "load": load.stop(),
    }
