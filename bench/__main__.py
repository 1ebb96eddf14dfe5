"""``python -m bench --quick | --full | --webhooks``: run the comparison, write docs/bench/.

Sets up what every scenario shares (a private Redis, the simulator, the bench database), runs
the scenarios one after another with a progress bar, measures webhook intake, and writes JSON,
Markdown and plots. Every child process is stopped on the way out, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .processes import ROOT, WEB_LOOPS, WEB_SERVER
from .topology import TOPOLOGIES
from .workload import DURATIONS

OUT = ROOT / "docs" / "bench"


MODES: dict[str, dict[str, Any]] = {
    # Under 3 minutes: N=100 for all four strategies, durations clipped at 20 s.
    "quick": {
        "ns": [100],
        "max_s": 20.0,
        "strategies": ("tutorial", "sdk", "countdown", "webhook"),
        "intake_s": 2.0,
        "rounds": 1,
        "json": "quick.json",
        "md": "quick.md",
        "plots": False,
        "title": "Benchmark (quick: N=100)",
    },
    "full": {
        "ns": [100, 1000, 10000],
        "max_s": 40.0,
        "strategies": ("tutorial", "sdk", "countdown", "webhook"),
        "intake_s": 5.0,
        "rounds": 2,
        "json": "results.json",
        "md": "results.md",
        "plots": True,
        "title": "Benchmark: four ways to wait for an OpenAI run",
    },
    # Issue 5's closing figures: 200 runs polled vs 200 runs by webhook, and intake.
    "webhooks": {
        "ns": [200],
        "max_s": 40.0,
        "strategies": ("countdown", "webhook"),
        "intake_s": 5.0,
        "rounds": 2,
        "threads": 8,
        "json": "webhooks.json",
        "md": "webhooks.md",
        "plots": False,
        "title": "Webhooks vs polling: 200 runs each (issue 5)",
    },
    # Issue 13: two nodes vs one (Redis, RabbitMQ), RabbitMQ at 1,000 runs, tick rate
    # (bench/scale_main.py; its own options under "--scale-out").
    "scale-out": {"json": "scale_out.json", "md": "scale_out.md"},
}
#: Where a blocking strategy cannot run, and why.
BLOCKING_LIMIT = 1000
BLOCKING_SKIP_REASON = (
    "a thread per run means 10,000 threads each holding a connection; the SDK's client pools at "
    "most 1,000 connections (the other 9,000 threads wait for one and time out), and a worker "
    "deployment would need 10,000 slots. Not run."
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    for name in MODES:
        mode.add_argument(f"--{name}", dest="mode", action="store_const", const=name)
    parser.add_argument("--ns", type=int, nargs="+", help="override the mode's N values")
    parser.add_argument(
        "--strategies", nargs="+", choices=("tutorial", "sdk", "countdown", "webhook")
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--median-s", type=float, default=8.0, help="median run duration")
    parser.add_argument("--max-s", type=float, default=None, help="clip durations here")
    parser.add_argument(
        "--min-s", type=float, default=None, help="shortest duration (default: 1 s or the median)"
    )
    parser.add_argument(
        "--durations",
        choices=DURATIONS,
        default="lognormal",
        help="uniform: every duration equally likely in [--min-s, --max-s] (issue 13's workload)",
    )
    parser.add_argument(
        "--tool-share",
        type=float,
        default=0.0,
        help="share of runs that make one tool call (0 until runs tracks tools)",
    )
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    parser.add_argument(
        "--web-workers", type=int, default=2, help="uvicorn processes serving the webhook intake"
    )
    parser.add_argument(
        "--web-loop",
        choices=WEB_LOOPS,
        default=WEB_SERVER,
        help="the scenarios' uvicorn event loop (uvloop, as deployed; asyncio, uvicorn's fallback, "
        "where --workers 2 leaves Nagle's algorithm on: docs/operations.md)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads per worker process (default: 1, so 2 slots; --webhooks: 8, so that polling "
        "can follow its schedule and its retrieve count is not understated)",
    )
    parser.add_argument(
        "--threads-large",
        type=int,
        default=8,
        help="threads per worker process for N > 1,000 (the aim there is 2 cores, not 2 slots)",
    )
    parser.add_argument(
        "--conn-max-age",
        type=int,
        default=60,
        help="CONN_MAX_AGE for the workers and the in-process intake where the database has no "
        "pool (SQLite, DATABASE_POOL_MAX_SIZE=0); on PostgreSQL the pool applies instead",
    )
    parser.add_argument(
        "--start-chunk",
        type=int,
        default=1,
        help="RUNS_START_CHUNK of the workers (the app's default, 1: one run per start task; "
        "docs/bench/README.md, 'Chunked starts', has 16 at N = 1,000)",
    )
    parser.add_argument(
        "--topologies",
        nargs="+",
        choices=TOPOLOGIES,
        default=["shared"],
        help="which queues each worker consumes (bench/topology.py): 'shared', every worker every "
        "queue; 'split', one worker for wakes and polls, the others for starts (niced, chunked); "
        "each Celery strategy runs once per topology, side by side",
    )
    parser.add_argument(
        "--starts-nice", type=int, default=10, help="niceness of the split topology's start workers"
    )
    parser.add_argument(
        "--split-start-chunk",
        type=int,
        default=16,
        help="RUNS_START_CHUNK of the split topology's start workers",
    )
    parser.add_argument(
        "--poll-modes",
        nargs="+",
        choices=("auto", "per_run", "batched"),
        default=["auto"],
        help="RUNS_POLL_MODE of the Celery rows, each a row of its own (docs/architecture.md, "
        "'When each wins'); batched also batches webhook runs' safety nets (their default)",
    )
    parser.add_argument(
        "--safety-net-mode",
        choices=("batched", "per_run"),
        default="batched",
        help="RUNS_SAFETY_NET_MODE of every Celery row: batched (the app's default: webhook "
        "runs' polls by due time) or per_run (a countdown task per run, as before the eighth "
        "session; with --poll-modes per_run it reproduces docs/bench/n10000_modes)",
    )
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--no-intake", action="store_true")
    parser.add_argument("--cap-s", type=float, default=None, help="longest wait per scenario")
    from .scale_main import add_arguments

    add_arguments(parser)
    return parser.parse_args(argv)


def cap_for(n: int, longest: float, override: float | None) -> float:
    """How long a scenario may take before we stop waiting (bounded, reported if hit). Above
    1,000 runs the starts alone take a while: the cap grows with N at 25 starts/s, the slowest
    rate seen here at N = 10,000 (a loaded 2-core host), so the cap stops a stuck run, not a slow
    start."""
    if override:
        return override
    return longest + (60 if n <= 200 else 120 if n <= 1000 else 300 + n / 25)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    mode = MODES[args.mode]
    console = Console()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        with ExitStack() as stack:
            return run(stack, console, args, mode)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: every child process was stopped[/]")
        return 130


def run(stack: ExitStack, console: Console, args: argparse.Namespace, mode: dict[str, Any]) -> int:
    from project.localredis import start_private_redis
    from runs_simulator.testing import RunningSimulator

    from .database import choose_url

    started = time.monotonic()
    db_url, db_note = choose_url()
    redis_server = start_private_redis()
    stack.callback(redis_server.stop)
    sim = stack.enter_context(RunningSimulator(seed=args.seed))
    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="runs-bench-")))
    env = {
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "DATABASE_URL": db_url,
        "CELERY_BROKER_URL": redis_server.url,
        "REDIS_URL": redis_server.url,
        "CELERY_TASK_DEFAULT_QUEUE": "bench",
        "OPENAI_BASE_URL": sim.base_url,
        "OPENAI_API_KEY": "sk-bench-simulator",
        "RUNS_LOG_LEVEL": "WARNING",
        "RUNS_DEADLINE_S": "600",
        "RUNS_START_CHUNK": str(args.start_chunk),
    }
    worker_db_url = _with_conn_max_age(db_url, args.conn_max_age)
    # This process (in-process intake) keeps its connection like a WSGI worker would.
    os.environ.update(env, DATABASE_URL=worker_db_url)
    import django

    django.setup()
    from .database import migrate

    migrate()
    console.print(f"bench: {db_note}; Redis {redis_server.url}; simulator {sim.url}")
    env["BENCH_WORKER_DATABASE_URL"] = worker_db_url
    if args.mode == "scale-out":
        # Scale-out compares slot-bound nodes: one run per start task, so a start holds a slot.
        env["RUNS_START_CHUNK"] = "1"
        return scale_out(console, args, sim, redis_server, env, workdir, db_note, started)
    return execute(stack, console, args, mode, sim, redis_server, env, workdir, db_note, started)


def scale_out(
    console: Console,
    args: argparse.Namespace,
    sim: Any,
    redis_server: Any,
    env: dict[str, str],
    workdir: Path,
    db_note: str,
    t0: float,
) -> int:
    """``--scale-out``: bench/scale_main.py, on the same simulator, Redis and database."""
    from . import scale_main, scenario

    bench = scenario.Bench(
        sim=sim,
        redis_url=redis_server.url,
        redis_pid=redis_server.process.pid,
        env={**env, "BENCH_DB_NOTE": db_note},
        workdir=workdir,
        progress=scale_main.progress(console),
        workers=args.workers,
        threads=args.threads or 8,
        worker_db_url=env["BENCH_WORKER_DATABASE_URL"],
        starts_nice=args.starts_nice,
        split_chunk=args.split_start_chunk,
        web_workers=args.web_workers,
        web_server=args.web_loop,
    )
    return scale_main.execute(bench, args, console, t0)


def _with_conn_max_age(url: str, seconds: int) -> str:
    if seconds <= 0 or url.startswith("sqlite"):
        return url
    return url + ("&" if "?" in url else "?") + f"conn_max_age={seconds}"


def execute(
    stack: ExitStack,
    console: Console,
    args: argparse.Namespace,
    mode: dict[str, Any],
    sim: Any,
    redis_server: Any,
    env: dict[str, str],
    workdir: Path,
    db_note: str,
    t0: float,
) -> int:
    import openai

    from . import report, scenario
    from .analysis import PRICE_PER_CALL
    from .verdicts import aims
    from .workload import Shape, make_workload, summary

    threads = args.threads or mode.get("threads", 1)
    shape = Shape(
        median_s=args.median_s,
        max_s=args.max_s or mode["max_s"],
        min_s=args.min_s if args.min_s is not None else min(1.0, args.median_s),
        tool_share=args.tool_share,
        durations=args.durations,
    )
    ns = args.ns or mode["ns"]
    strategies = tuple(args.strategies or mode["strategies"])
    results: dict[str, Any] = {
        "command": "python -m bench " + " ".join(sys.argv[1:] or [f"--{args.mode}"]),
        "mode": args.mode,
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "cpus": os.cpu_count(),
            "load1_at_start": os.getloadavg()[0],
            "python": platform.python_version(),
            "openai": openai.__version__,
        },
        "database": db_note,
        "price_per_call": PRICE_PER_CALL,
        "workload_shape": shape.as_dict(),
        "config": {
            "conn_max_age_workers": args.conn_max_age,
            "threads_large": args.threads_large,
            "start_chunk": args.start_chunk,
            "topologies": list(args.topologies),
            "starts_nice": args.starts_nice,
            "split_start_chunk": args.split_start_chunk,
            "poll_modes": list(args.poll_modes),
            "workers": args.workers,
            "web_workers": args.web_workers,
            "web_server": args.web_loop,
            "threads": threads,
            "seed": args.seed,
            "webhook_delay_s": 0.0,
            "sim_seed": args.seed,
        },
        "workloads": {},
        "scenarios": [],
        "skipped": [],
        "notes": list(NOTES),
    }
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    bench = scenario.Bench(
        sim=sim,
        redis_url=redis_server.url,
        redis_pid=redis_server.process.pid,
        env=env,
        workdir=workdir,
        progress=progress,
        workers=args.workers,
        threads=threads,
        worker_db_url=env["BENCH_WORKER_DATABASE_URL"],
        starts_nice=args.starts_nice,
        split_chunk=args.split_start_chunk,
        web_workers=args.web_workers,
        web_server=args.web_loop,
    )
    with progress:
        for n in ns:
            plans = make_workload(n, args.seed, shape)
            results["workloads"][str(n)] = summary(plans)
            cap = cap_for(n, max(p.duration_s for p in plans), args.cap_s)
            bench.threads = threads if n <= 1000 else args.threads_large
            for strategy in strategies:
                if strategy in ("tutorial", "sdk") and n > BLOCKING_LIMIT:
                    results["skipped"].append(
                        {"strategy": strategy, "n": n, "reason": BLOCKING_SKIP_REASON}
                    )
                    continue
                if strategy in ("tutorial", "sdk"):
                    results["scenarios"].append(scenario.run_blocking(bench, strategy, plans, cap))
                    report.write_json(workdir / "partial.json", results)
                    continue
                for shape in args.topologies:
                    for poll_mode in args.poll_modes:
                        bench.topology, bench.poll_mode = shape, poll_mode
                        bench.safety_net_mode = args.safety_net_mode
                        result = scenario.run_celery(bench, strategy, plans, cap)
                        results["scenarios"].append(result)
                        report.write_json(workdir / "partial.json", results)
        if not args.no_intake:
            results["intake"] = measure_intake(bench, mode, progress)
    results["ratios"] = ratios(results["scenarios"])
    results["aims"] = aims(results)
    results["bench_wall_s"] = round(time.monotonic() - t0, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    plots: list[str] = []
    if mode["plots"] and len(ns) > 1:
        from . import plots as plotting

        plots = plotting.write(args.out, results["scenarios"])
    report.write_json(args.out / mode["json"], results)
    report.write_markdown(args.out / mode["md"], results, mode["title"], plots)
    console.print(
        f"wrote {args.out / mode['json']} and {args.out / mode['md']} "
        f"in {results['bench_wall_s']} s"
    )
    return 0


def measure_intake(bench: Any, mode: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Signed events/s through the webhook view vs the bare view: in-process and over HTTP."""
    import base64
    import secrets

    import redis

    from . import intake
    from .load import LoadWindow

    task = progress.add_task("webhook intake vs a bare view", total=2)
    load = LoadWindow().start()
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    bench.clean_slate()
    object_ids = intake.make_runs(2000)
    measured = {"inprocess": intake.inprocess(secret, object_ids, mode["intake_s"], mode["rounds"])}
    progress.update(task, completed=1)
    servers = intake.over_http(
        bench.env,
        secret,
        object_ids,
        bench.workdir,
        seconds=mode["intake_s"],
        rounds=mode["rounds"],
        servers=(WEB_SERVER, "asyncio"),
    )
    # "http" is the loop the scenarios' web processes run (the aim's row); "http_asyncio" the
    # one uvicorn falls back to without uvloop.
    measured["http"] = servers[WEB_SERVER]
    measured["http_asyncio"] = servers["asyncio"]
    progress.update(task, completed=2)
    measured["load"] = load.stop()
    redis.Redis.from_url(bench.redis_url).flushdb()  # the wake tasks nobody consumed
    return measured


def ratios(scenarios: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each strategy against the tutorial loop at the same N (or countdown polling without it)."""
    from .scenario import label

    out = []
    for n in sorted({s["n"] for s in scenarios}):
        at_n = {label(s): s for s in scenarios if s["n"] == n}
        base = next(
            (
                s
                for kind in ("tutorial", "countdown")
                for s in at_n.values()
                if s["strategy"] == kind
            ),
            None,
        )
        if base is None:
            continue
        base_name = label(base)

        def cost(s: dict[str, Any], key: str) -> float:
            procs = s.get("processes", {})
            return sum(procs.get(g, {}).get(key, 0.0) for g in ("worker", "web"))

        def div(a: float | None, b: float | None) -> float | None:
            return round(a / b, 3) if a is not None and b else None

        for name, s in at_n.items():
            if name == base_name:
                continue
            out.append(
                {
                    "n": n,
                    "strategy": s["strategy"],
                    "topology": s.get("topology", "shared"),
                    "poll_mode": s.get("poll_mode", "per_run"),
                    "baseline": base_name,
                    "calls": div(s["calls_per_run"]["total"], base["calls_per_run"]["total"]),
                    "retrieves": div(
                        s["calls_per_run"]["retrieve"], base["calls_per_run"]["retrieve"]
                    ),
                    "detection_p99": div(s["detection_ms"]["p99"], base["detection_ms"]["p99"]),
                    "cpu": div(cost(s, "cpu_s"), cost(base, "cpu_s")),
                    "rss": div(cost(s, "peak_rss_mb"), cost(base, "peak_rss_mb")),
                    "slots": div(s["slots"], base["slots"]),
                    "wall": div(s["wall_s"], base["wall_s"]),
                }
            )
    return out


NOTES = [
    "Strategy 2: openai 3.57 has no poll helper for the Responses API (client.responses offers "
    "create/retrieve/cancel only). The helpers that exist are the Assistants API's "
    "client.beta.threads.runs.create_and_poll / poll (deprecated with Assistants): it polls every "
    "1 s unless the server sends openai-poll-after-ms (the simulator does not, by default). So "
    "strategy 2 runs Assistants runs (threads.create counts as 'other') on the same durations.",
    "The blocking strategies use the SDK's default client (2 retries, 1,000 pooled connections) "
    "and create no conversation; our Celery strategies create one conversation per run "
    "(conversations.create, counted as 'other'), as the app does for a new thread.",
    "Webhooks are delivered by the simulator with webhook_delay_s = 0 (OpenAI's own delivery "
    "delay is not ours to measure); detection for strategy 4 is webhook POST + intake + an "
    "immediate poll task + one retrieve.",
    "Tool calls: a share of completed runs (--tool-share) asks for one call of the example tool "
    "add; every strategy answers it (the blocking loops by hand, ours through "
    "runs/engine/tool_round.py), and a run's retrieves add up over the responses of its "
    "tool rounds.",
    "Poll lateness and per-tick CPU come from a probe in the bench's worker "
    "(bench/celery_app.py: Celery task_prerun/postrun signals, one Redis RPUSH per task).",
    "Worker CPU and peak RSS: psutil samples of the worker processes every 0.5 s (the blocking "
    "runner is one process; Celery: the worker processes, plus the web process for webhooks).",
]


if __name__ == "__main__":
    raise SystemExit(main())
