"""One scenario: one strategy, one N, measured from a clean slate.

Before each scenario the simulator's counters, the private Redis and the bench database are
emptied, and fresh worker/web processes are started, so CPU, RSS and call counts belong to that
scenario alone. Each scenario is bounded by ``cap_s``: runs not terminal by then are reported as
such (and the scenario as not finished), never waited for.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from rich.progress import Progress, TaskID

from project.localredis import free_port

from . import processes, topology
from .analysis import figures, webhook_legs
from .celery_app import FAILURES_KEY, LATENESS_KEY
from .load import LoadWindow
from .sampling import ProcessSampler, SimSampler
from .stats import summarize
from .workload import TOOL_NAME, Plan

STRATEGIES = ("tutorial", "sdk", "countdown", "webhook")
LABELS = {
    "tutorial": "1. tutorial loop (thread per run)",
    "sdk": "2. SDK poll helper (thread per run)",
    "countdown": "3. countdown polling (Celery)",
    "webhook": "4. webhooks (Celery + web)",
}


def label(scenario: dict[str, Any]) -> str:
    """A row's name: its strategy, and its topology and poll mode where not the defaults."""
    return ", ".join([LABELS[scenario["strategy"]], *topology.notes(scenario)])


@dataclass
class Bench:
    """What every scenario shares: the simulator, the private Redis, the environment."""

    sim: Any  # runs_simulator.testing.RunningSimulator
    redis_url: str
    redis_pid: int
    env: dict[str, str]
    workdir: Path
    progress: Progress
    workers: int = 2
    threads: int = 1
    #: The workers' DATABASE_URL (``?conn_max_age=``, which applies only where there is no pool).
    worker_db_url: str = ""
    #: Which queues each worker consumes (``bench/topology.py``), for the next Celery scenario.
    topology: str = "shared"
    #: In the split topology: the start workers' niceness and ``RUNS_START_CHUNK``.
    starts_nice: int = 10
    split_chunk: int = 16
    #: ``RUNS_POLL_MODE`` of the workers and beat.
    poll_mode: str = "auto"
    #: ``RUNS_SAFETY_NET_MODE`` (webhook runs' polls): the app's default, or "per_run" (a
    #: countdown task per run, the default before the eighth session; ``--safety-net-mode``).
    safety_net_mode: str = "batched"
    #: uvicorn processes serving the webhook intake (docker-compose.yml and docs/operations.md
    #: run two: one process is one core at most, whatever its threads).
    web_workers: int = 2
    #: Their event loop (``runs_dev.processes.WEB_SERVERS``; ``--web-loop``).
    web_server: str = processes.WEB_SERVER
    notes: list[str] = field(default_factory=list)

    def clean_slate(self, *, webhook_url: str | None = None, secret: str | None = None) -> None:
        from .database import empty_tables

        self.sim.reset(keep_config=True)
        self.sim.configure(webhook_url=webhook_url, webhook_secret=secret, webhook_delay_s=0.0)
        redis.Redis.from_url(self.redis_url).flushdb()
        empty_tables()

    def samplers(self) -> tuple[ProcessSampler, SimSampler]:
        procs = ProcessSampler()
        procs.watch("simulator", self.sim.process.pid)
        procs.watch("redis", self.redis_pid)
        return procs, SimSampler(self.sim.url)


def _finish(
    procs: ProcessSampler,
    pace: SimSampler,
    result: dict[str, Any],
    cap_hit: bool,
    cap_s: float,
    load: LoadWindow,
) -> dict[str, Any]:
    result["load"] = load.stop()
    result["processes"] = procs.stop()
    result["sim_pace"] = pace.stop()
    result["finished"] = not cap_hit and result["terminal"] == result["n"]
    result["cap_hit"] = cap_hit
    result["cap_s"] = round(cap_s, 1)
    return result


def _watch(bench: Bench, task: TaskID, total: int, count: Any, cap_s: float, alive: Any) -> bool:
    """Update the progress bar until ``count()`` reaches ``total``; True when the cap was hit."""
    give_up = time.monotonic() + cap_s
    while time.monotonic() < give_up:
        done = count()
        bench.progress.update(task, completed=done)
        if done >= total:
            return False
        alive()
        time.sleep(0.5)
    return True


# --- strategies 1 and 2: a thread per run, in a child process ------------------------------------


def run_blocking(bench: Bench, strategy: str, plans: list[Plan], cap_s: float) -> dict[str, Any]:
    bench.clean_slate()
    tag = f"{strategy}-{len(plans)}"
    plans_file = bench.workdir / f"{tag}-plans.json"
    out_file = bench.workdir / f"{tag}-out.json"
    progress_file = bench.workdir / f"{tag}-progress"
    # run_id, as our app sends it: the simulator then counts creates and retrieves per run.
    plans_file.write_text(json.dumps([{**p.metadata(), "run_id": str(p.index)} for p in plans]))
    progress_file.write_text("0")
    task = bench.progress.add_task(LABELS[strategy] + f", N={len(plans)}", total=len(plans))
    procs, pace = bench.samplers()
    load = LoadWindow().start()
    with ExitStack() as stack:
        pace.start()
        child = processes.spawn(
            stack,
            [
                "-m",
                "bench.blocking",
                "--strategy",
                strategy,
                "--base-url",
                bench.sim.base_url,
                "--plans",
                str(plans_file),
                "--out",
                str(out_file),
                "--progress",
                str(progress_file),
                "--timeout",
                str(cap_s),
            ],
            bench.env,
        )
        procs.watch("worker", child.pid)
        ready = Path(str(progress_file) + ".ready")
        give_up = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < give_up and child.poll() is None:
            time.sleep(0.05)
        procs.baseline()
        Path(str(progress_file) + ".go").write_text("go")
        procs.start()

        def count() -> int:
            try:
                return int(progress_file.read_text() or 0)
            except ValueError:
                return 0

        def alive() -> None:
            if child.poll() is not None and not out_file.exists():
                raise processes.ChildFailed(f"{strategy} runner exited with {child.returncode}")

        cap_hit = _watch(bench, task, len(plans), count, cap_s + 5, alive)
        procs.sample()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            cap_hit = True
    out = json.loads(out_file.read_text()) if out_file.exists() else {"runs": [], "started_at": 0}
    seen = [
        (str(i), r.get("remote_id", ""), r.get("status", "timeout"), r.get("detected_at"))
        for i, r in enumerate(out["runs"])
    ]
    errors = [r["error"] for r in out["runs"] if r.get("error")]
    result = figures(
        plans=plans,
        sim_stats=bench.sim.stats(),
        seen=seen,
        started_at=out["started_at"],
        tool_rounds={str(p.index): p.tool_rounds for p in plans},
    )
    result.update(
        strategy=strategy,
        slots=len(plans),
        slots_kind="threads (one per run)",
        errors=len(errors),
        error_examples=sorted(set(errors))[:3],
    )
    return _finish(procs, pace, result, cap_hit, cap_s, load)


# --- strategies 3 and 4: our Celery tracking -----------------------------------------------------


def _probe_records(redis_url: str) -> dict[str, Any]:
    """Per-task lateness and CPU recorded by ``bench.celery_app`` in the workers."""
    raw = redis.Redis.from_url(redis_url).lrange(LATENESS_KEY, 0, -1)
    by_name: dict[str, dict[str, list[float]]] = {}
    for item in raw:
        name, lateness, wall, cpu, *rest = item.decode().split(",")
        entry = by_name.setdefault(name, {"lateness": [], "wall": [], "cpu": [], "queries": []})
        if lateness:
            entry["lateness"].append(float(lateness))
        entry["wall"].append(float(wall))
        entry["cpu"].append(float(cpu))
        entry["queries"].extend(float(q) for q in rest[:1])
    return {
        name.removeprefix("runs."): {
            "tasks": len(v["wall"]),
            "lateness_ms": summarize(v["lateness"], 1000.0, 1),
            "wall_ms": summarize(v["wall"], 1000.0, 2),
            "cpu_ms": summarize(v["cpu"], 1000.0, 2),
            "cpu_s_total": round(sum(v["cpu"]), 2),
            "queries_mean": _mean(v["queries"]),
        }
        for name, v in by_name.items()
    }


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def task_failures(redis_url: str) -> dict[str, int]:
    """``"failure runs.poll_run ValueError" -> count`` recorded by the probe (empty: none)."""
    raw = redis.Redis.from_url(redis_url).lrange(FAILURES_KEY, 0, -1)
    counts: dict[str, int] = {}
    for item in raw:
        key = item.decode().replace(",", " ")
        counts[key] = counts.get(key, 0) + 1
    return counts


def _create_runs(plans: list[Plan], strategy: str) -> list[int]:
    """The runs as an application creates them (``create_run``), in one transaction."""
    from django.db import transaction

    from runs.services import create_run

    with transaction.atomic():
        return [
            create_run(
                f"Benchmark question {p.index}",
                metadata=p.metadata(),
                strategy=strategy,
                tools=[TOOL_NAME] if p.tool_rounds else None,
            ).pk
            for p in plans
        ]


def run_celery(bench: Bench, strategy: str, plans: list[Plan], cap_s: float) -> dict[str, Any]:
    from runs.models import Run
    from runs.status import TERMINAL
    from runs.tasks import start_run

    run_strategy = "poll" if strategy == "countdown" else "webhook"
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    env = processes.child_env(
        bench.env,
        RUNS_STRATEGY=run_strategy,
        OPENAI_WEBHOOK_SECRET=secret,
        RUNS_POLL_MODE=bench.poll_mode,
        RUNS_SAFETY_NET_MODE=bench.safety_net_mode,
    )
    name = label(
        {
            "strategy": strategy,
            "topology": bench.topology,
            "poll_mode": bench.poll_mode,
            "safety_net_mode": bench.safety_net_mode,
        }
    )
    task = bench.progress.add_task(f"{name}, N={len(plans)}", total=len(plans))
    procs, pace = bench.samplers()
    with ExitStack() as stack:
        webhook_url = None
        if strategy == "webhook":
            port = free_port()
            web = processes.start_web(
                stack,
                env,
                port,
                workers=bench.web_workers,
                log=bench.workdir / "web.log",
                server=bench.web_server,
            )
            procs.watch("web", web.pid)
            webhook_url = f"http://127.0.0.1:{port}/webhooks/openai/"
        bench.clean_slate(webhook_url=webhook_url, secret=secret if webhook_url else None)
        worker_env = processes.child_env(
            env, DATABASE_URL=bench.worker_db_url or env["DATABASE_URL"]
        )
        roles = topology.roles(
            bench.topology,
            bench.workers,
            starts_nice=bench.starts_nice,
            split_chunk=bench.split_chunk,
        )
        workers = processes.start_workers(
            stack,
            worker_env,
            workers=bench.workers,
            threads=bench.threads,
            tag=f"{strategy}{len(plans)}",
            logdir=bench.workdir,
            roles=roles,
        )
        # The workload runs beat (the sweep; runs.poll_due in batched polling).
        processes.start_beat(stack, worker_env, bench.workdir)
        from project.celery import app

        processes.wait_workers(app, workers)
        for process, _ in workers:
            procs.watch("worker", process.pid)
        bench.progress.update(task, description=f"{name}, N={len(plans)}: creating")
        run_ids = _create_runs(plans, run_strategy)
        bench.progress.update(task, description=f"{name}, N={len(plans)}")
        procs.baseline()
        procs.start()
        pace.start()
        load = LoadWindow().start()
        started_at = time.time()
        for run_id in run_ids:
            start_run.delay(run_id)
        enqueued_s = time.time() - started_at

        def alive() -> None:
            for process, hostname in workers:
                if process.poll() is not None:
                    raise processes.ChildFailed(f"worker {hostname} exited")

        cap_hit = _watch(
            bench,
            task,
            len(plans),
            lambda: Run.objects.filter(status__in=TERMINAL).count(),
            cap_s,
            alive,
        )
        procs.sample()
    rows = list(
        Run.objects.values_list("pk", "remote_id", "status", "completed_at", "submitted_at")
    )
    seen = [
        (str(pk), remote_id, status, done.timestamp() if done and status in TERMINAL else None)
        for pk, remote_id, status, done, _ in rows
    ]
    start_lag = [s.timestamp() - started_at for *_, s in rows if s is not None]
    sim_stats = bench.sim.stats()
    result = figures(
        plans=plans,
        sim_stats=sim_stats,
        seen=seen,
        started_at=started_at,
        tool_rounds={str(pk): p.tool_rounds for pk, p in zip(run_ids, plans, strict=True)},
    )
    result.update(
        strategy=strategy,
        topology=bench.topology,
        roles=[
            {"name": r.name, "queues": r.queues, "nice": r.nice, "start_chunk": r.start_chunk}
            for r in roles
        ],
        poll_mode=bench.poll_mode,
        safety_net_mode=bench.safety_net_mode,
        slots=bench.workers * bench.threads,
        slots_kind=f"{bench.workers} worker process(es) x {bench.threads} thread(s)",
        enqueue_s=round(enqueued_s, 2),
        start_lag_ms=summarize(start_lag, 1000.0, 0),
        tasks=_probe_records(bench.redis_url),
        task_failures=task_failures(bench.redis_url),
    )
    if strategy == "webhook":
        result["webhook_legs"] = webhook_legs(seen, sim_stats.get("objects", {}), _received())
    return _finish(procs, pace, result, cap_hit, cap_s, load)


def _received() -> dict[str, float]:
    """The epoch time each remote id's first event was stored by our intake."""
    from django.db.models import Min

    from runs.models import WebhookEvent

    firsts = (
        WebhookEvent.objects.exclude(object_id="")
        .values("object_id")
        .annotate(first=Min("received_at"))
        .values_list("object_id", "first")
    )
    return {object_id: first.timestamp() for object_id, first in firsts}
