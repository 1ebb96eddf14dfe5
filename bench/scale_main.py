"""``python -m bench --scale-out``: two nodes vs one (Redis, RabbitMQ), RabbitMQ at 1,000 runs,
and the tick rate, in one invocation -> docs/bench/scale_out.{json,md}.

Each figure is a ratio against its baseline measured in the same invocation: two nodes against one
node on the same broker, the 1,000-run RabbitMQ row against the same runs on Redis, a real poll
tick against a bare countdown task. ``--parts`` runs a subset (the smoke test runs tiny ones).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from . import report
from .scenario import Bench
from .workload import Shape, make_workload

PARTS = ("scale", "rabbit", "tick")
RABBIT_URL = "amqp://guest:guest@127.0.0.1:5672//"
NOTES = [
    "A node is one worker process; both nodes run on this one machine, so two nodes can only "
    "scale where one node is bound by its slots (waiting on the API), not by CPU: the CPU share "
    "per node and the load average say which held.",
    "Each broker's rows use their own queues (RUNS_QUEUE_PREFIX), purged before each row; live "
    "status and the request budget use the private Redis in every row (RUNS_PUBSUB_URL and "
    "RUNS_BUDGET_REDIS_URL set explicitly), whichever the broker.",
    "Retrieves per run below the schedule's count mean polls ran late (poll lateness): fewer "
    "looks at a run than its schedule asks for, each later than due.",
    "Tick rate: both kinds of tick use the same countdown path (an ETA task due 1 ms later) on "
    "the same worker processes; if both were bound by worker CPU alone, the ratio would be the "
    "inverse ratio of their CPU per tick.",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("--scale-out")
    group.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    group.add_argument("--brokers", nargs="+", choices=("redis", "rabbitmq"), default=None)
    group.add_argument("--rabbit-url", default=os.environ.get("BENCH_RABBIT_URL", RABBIT_URL))
    group.add_argument("--scale-n", type=int, default=300, help="runs per scale-out measurement")
    group.add_argument("--node-threads", type=int, default=4, help="slots per node")
    group.add_argument("--run-s", type=float, default=1.0, help="each scale-out run's duration")
    group.add_argument(
        "--latency-ms", type=float, default=100.0, help="simulator latency per API call"
    )
    group.add_argument("--rabbit-n", type=int, default=1000, help="runs in the RabbitMQ row")
    group.add_argument("--tick-chains", type=int, default=32, help="tick chains in flight")
    group.add_argument("--tick-window-s", type=float, default=10.0)
    group.add_argument(
        "--tick-repeats",
        type=lambda v: max(1, int(v)),
        default=3,
        help="bare/poll pairs for the tick rate; the pair with the median ratio is reported",
    )
    group.add_argument(
        "--tick-batched-runs",
        type=int,
        default=2000,
        help="runs in progress for the batched-polling tick row (0: no such row)",
    )


def execute(bench: Bench, args: argparse.Namespace, console: Console, t0: float) -> int:
    import time

    from . import scale_out, scenario, tick_rate
    from .load import cores, load1

    results: dict[str, Any] = {
        "command": "python -m bench " + " ".join(sys.argv[1:] or ["--scale-out"]),
        "mode": "scale-out",
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cores": cores(), "load1_at_start": load1()},
        "database": bench.env.get("BENCH_DB_NOTE", ""),
        "notes": list(NOTES),
    }
    brokers = {
        "redis": scale_out.Broker("redis", bench.redis_url, "bench-scale"),
        "rabbitmq": scale_out.Broker("rabbitmq", args.rabbit_url, "bench-scale"),
    }
    chosen = args.brokers or list(brokers)
    with bench.progress:
        if "scale" in args.parts:
            latency = args.latency_ms / 1000.0
            bench.sim.configure(latency_s=latency)
            shape = Shape(median_s=args.run_s, sigma=0.0, min_s=args.run_s, max_s=args.run_s)
            plans = make_workload(args.scale_n, args.seed, shape)
            cap = args.cap_s or 600.0
            rows, ratios = [], []
            for name in chosen:
                one = scale_out.measure(bench, brokers[name], 1, args.node_threads, plans, cap)
                two = scale_out.measure(bench, brokers[name], 2, args.node_threads, plans, cap)
                rows += [one, two]
                ratios.append(scale_out.compare(one, two))
            bench.sim.configure(latency_s=0.0)
            results["scale_out"] = {
                "simulator_latency_ms": args.latency_ms,
                "run_s": args.run_s,
                "rows": rows,
                "ratios": ratios,
            }
        if "rabbit" in args.parts:
            shape = Shape(durations="uniform", min_s=5.0, max_s=20.0)  # the workload
            plans = make_workload(args.rabbit_n, args.seed, shape)
            cap = args.cap_s or max(p.duration_s for p in plans) + 120
            bench.workers, bench.threads = args.workers, args.threads or 8
            rows = []
            # bench/topology.py: which queues each worker takes; then RUNS_POLL_MODE.
            for topology, poll_mode, name in itertools.product(
                args.topologies, args.poll_modes, ("redis", "rabbitmq")
            ):
                bench.topology, bench.poll_mode = topology, poll_mode
                broker = brokers[name]
                saved = bench.env
                bench.env = scale_out.broker_env(bench, broker)
                try:
                    with scale_out.on_broker(bench, broker):
                        row = scenario.run_celery(bench, "countdown", plans, cap)
                finally:
                    bench.env = saved
                row["broker"] = name
                row["doubled"] = row["duplicate_creates"]
                row["lost"] = row["n"] - row["terminal"]
                rows.append(row)
            bench.topology, bench.poll_mode = "shared", "per_run"
            results["rabbit_1000"] = {"rows": rows, "shape": shape.as_dict()}
        if "tick" in args.parts:
            bench.workers, bench.threads = args.workers, args.threads or 8
            results["tick_rate"] = tick_rate.measure(
                bench,
                chains=args.tick_chains,
                window_s=args.tick_window_s,
                batched_runs=args.tick_batched_runs,
                repeats=args.tick_repeats,
            )
    results["bench_wall_s"] = round(time.monotonic() - t0, 1)
    from .scale_report import write_markdown

    args.out.mkdir(parents=True, exist_ok=True)
    report.write_json(args.out / "scale_out.json", results)
    write_markdown(args.out / "scale_out.md", results)
    console.print(f"wrote {args.out / 'scale_out.json'} and .md in {results['bench_wall_s']} s")
    return 0


def progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
