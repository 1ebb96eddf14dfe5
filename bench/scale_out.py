"""Scale-out on Celery: the same runs through one worker node, then two, on one broker and database.

What it proves: a second node (a separate worker process with its own ``-n`` hostname, sharing the
broker and the PostgreSQL database) adds throughput, and nothing is lost or doubled when two nodes
take tasks from the same queues. Why slot-bound: on a 2-core machine, nodes bound by CPU would
only share the same two cores and prove nothing about adding machines. So each node has a fixed
number of slots (threads) and the simulator answers every API call after a fixed latency (a
network round trip); a node then spends its time waiting on the API, its CPU share is recorded
to show it stays well under a core, and the throughput of two nodes against one is the figure.

Throughput is runs taken to a terminal status per second, from the first enqueue to the last row
turning terminal. *Lost* is a run not terminal by the cap; *doubled* is a run the simulator saw
created more than once (``creates_by_run_id``).
"""

from __future__ import annotations

import contextlib
import os
import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import redis

from . import processes
from .celery_app import LATENESS_KEY
from .load import LoadWindow
from .sampling import ProcessSampler
from .scenario import Bench, _create_runs, _probe_records, task_failures
from .workload import Plan


@dataclass(frozen=True)
class Broker:
    """A broker the nodes share: its name in the report, its URL, the queue the bench uses."""

    name: str
    url: str
    queue: str


def broker_env(bench: Bench, broker: Broker, **extra: str) -> dict[str, str]:
    """Child environment on ``broker``: its own queues (``RUNS_QUEUE_PREFIX``, as
    ``runs_dev.processes.pointed_at`` routes this process), and live status and the request
    budget explicitly on Redis (``RUNS_PUBSUB_URL``/``RUNS_BUDGET_REDIS_URL``: with RabbitMQ as
    the broker they must not default to the broker URL, which no Redis client can use)."""
    return processes.child_env(
        bench.env,
        CELERY_BROKER_URL=broker.url,
        CELERY_TASK_DEFAULT_QUEUE=broker.queue,
        RUNS_QUEUE_PREFIX=broker.queue,
        RUNS_PUBSUB_URL=bench.redis_url,
        RUNS_BUDGET_REDIS_URL=bench.redis_url,
        DATABASE_URL=bench.worker_db_url or bench.env["DATABASE_URL"],
        **extra,
    )


@contextlib.contextmanager
def on_broker(bench: Bench, broker: Broker) -> Any:
    """This process publishes to ``broker``'s queues for a while (``runs_dev.processes``).

    ``CELERY_BROKER_URL`` leaves this process's environment meanwhile: Celery reads that variable
    before its configuration, so it would win over the broker set here.
    """
    from runs_dev.processes import pointed_at

    saved = os.environ.pop("CELERY_BROKER_URL", None)
    try:
        with pointed_at(
            broker_url=broker.url, queue=broker.queue, openai_base_url=bench.sim.base_url
        ):
            purge()
            yield
    finally:
        if saved is not None:
            os.environ["CELERY_BROKER_URL"] = saved


def purge() -> None:
    """Empty the queues this process now sends to (its default queue and ``RUNS_QUEUES``):
    a previous, interrupted bench may have left tasks on a shared RabbitMQ."""
    from project.celery import app
    from runs.conf import settings

    queues = {app.conf.task_default_queue, *(q for q in settings.RUNS_QUEUES.values() if q)}
    with app.connection_for_write() as conn:
        for queue in sorted(queues):
            channel = conn.channel()  # AMQP closes a channel that names a missing queue
            with contextlib.suppress(Exception):  # a queue that does not exist yet is empty
                channel.queue_purge(queue)
            with contextlib.suppress(Exception):
                channel.close()


def measure(
    bench: Bench, broker: Broker, nodes: int, threads: int, plans: list[Plan], cap_s: float
) -> dict[str, Any]:
    """``len(plans)`` runs by polling through ``nodes`` worker nodes of ``threads`` slots each."""
    from project.celery import app
    from runs.models import Run
    from runs.status import TERMINAL
    from runs.tasks import start_run

    label = f"{broker.name}: {nodes} node(s) x {threads} threads, N={len(plans)}"
    task = bench.progress.add_task(label, total=len(plans))
    # No beat here (nothing but slots is measured): countdowns only, none left to runs.poll_due.
    env = broker_env(bench, broker, RUNS_STRATEGY="poll", RUNS_POLL_MODE="per_run")
    procs = ProcessSampler()
    procs.watch("simulator", bench.sim.process.pid)
    with ExitStack() as stack, on_broker(bench, broker):
        bench.clean_slate()
        started = [
            processes.start_node(
                stack,
                env,
                hostname=f"node-{chr(97 + i)}-{broker.name}{nodes}@bench",
                threads=threads,
                logdir=bench.workdir,
            )
            for i in range(nodes)
        ]
        processes.wait_workers(app, started)
        for process, hostname in started:
            procs.watch(hostname, process.pid)
        run_ids = _create_runs(plans, "poll")
        procs.baseline()
        procs.start()
        load = LoadWindow().start()
        t0 = time.time()
        for run_id in run_ids:
            start_run.delay(run_id)
        give_up = time.monotonic() + cap_s
        done = 0
        while time.monotonic() < give_up:
            done = Run.objects.filter(status__in=TERMINAL).count()
            bench.progress.update(task, completed=done)
            if done >= len(plans):
                break
            for process, hostname in started:
                if process.poll() is not None:
                    raise processes.ChildFailed(f"worker {hostname} exited")
            time.sleep(0.25)
        load_seen = load.stop()
        usage = procs.stop()
    return _figures(bench, broker, nodes, threads, plans, t0, usage, load_seen, cap_s)


def _figures(
    bench: Bench,
    broker: Broker,
    nodes: int,
    threads: int,
    plans: list[Plan],
    t0: float,
    usage: dict[str, dict[str, float]],
    load: dict[str, Any],
    cap_s: float,
) -> dict[str, Any]:
    from django.db.models import Max

    from runs.models import Run
    from runs.status import TERMINAL

    n = len(plans)
    terminal = Run.objects.filter(status__in=TERMINAL)
    done = terminal.count()
    last = terminal.aggregate(last=Max("completed_at"))["last"]
    wall = (last.timestamp() - t0) if last else None
    stats = bench.sim.stats(objects=False)
    creates = stats.get("creates_by_run_id", {})
    per_node = _tasks_per_node(bench.redis_url)
    node_usage = {h: u for h, u in usage.items() if h.startswith("node-")}
    return {
        "broker": broker.name,
        "nodes": nodes,
        "threads_per_node": threads,
        "slots": nodes * threads,
        "n": n,
        "terminal": done,
        "lost": n - done,
        "doubled": sum(1 for c in creates.values() if c > 1),
        "created": len(creates),
        "task_failures": task_failures(bench.redis_url),
        "wall_s": round(wall, 2) if wall else None,
        "runs_per_s": round(done / wall, 2) if wall else None,
        "api_calls": sum(stats.get("calls", {}).values()),
        "api_calls_per_s": round(sum(stats.get("calls", {}).values()) / wall, 1) if wall else None,
        "tasks_per_node": per_node,
        # How late tasks started after they were due: slots (or a broker) falling behind.
        "lateness_p99_ms": {
            name: (v.get("lateness_ms") or {}).get("p99")
            for name, v in _probe_records(bench.redis_url).items()
            if name in ("poll_run", "start_run")
        },
        "node_cpu_share": {
            h: round(u["cpu_s"] / wall, 3) if wall else None for h, u in node_usage.items()
        },
        "simulator_cpu_share": round(usage["simulator"]["cpu_s"] / wall, 3) if wall else None,
        "load": load,
        "cap_s": cap_s,
        "finished": done == n,
    }


def _tasks_per_node(redis_url: str) -> dict[str, int]:
    """Tasks each node ran (the probe records the worker's hostname): both nodes must work."""
    counts: dict[str, int] = {}
    for item in redis.Redis.from_url(redis_url).lrange(LATENESS_KEY, 0, -1):
        parts = item.decode().split(",")
        host = parts[5] if len(parts) > 5 else "?"
        counts[host] = counts.get(host, 0) + 1
    return counts


def compare(one: dict[str, Any], two: dict[str, Any]) -> dict[str, Any]:
    """Two nodes against one on the same broker: the ratio and whether the aims hold."""
    ratio = (
        round(two["runs_per_s"] / one["runs_per_s"], 2)
        if one.get("runs_per_s") and two.get("runs_per_s")
        else None
    )
    clean = all(r["lost"] == 0 and r["doubled"] == 0 for r in (one, two))
    return {
        "broker": one["broker"],
        "throughput_ratio": ratio,
        "aim": 1.6,
        "met": ratio is not None and ratio >= 1.6 and clean,
        "zero_lost_zero_doubled": clean,
    }
