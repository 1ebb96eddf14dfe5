"""The chaos run: many runs while the worker is SIGKILLed, Redis is flushed and the API misbehaves.

It proves the recovery design end to end: every run must end terminal (none lost), and the
simulator's own counts say how many remote creates were doubled. Used by ``manage.py chaos`` and,
at a small size, by the tests.
"""

from __future__ import annotations

import json
import math
import os
import random
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

from project.localredis import start_private_redis
from runs import processes
from runs.models import Run
from runs.services import create_run
from runs.status import TERMINAL
from runs.tasks import start_run


@dataclass
class ChaosConfig:
    runs: int = 300
    kill_every_s: float = 4.0
    flush_at_s: float | None = None  # default: the middle of the expected run time
    fault_rate: float = 0.05  # of all API calls: 40 % 429, 40 % 500, 20 % slow
    slow_s: float = 4.0
    client_timeout_s: float = 2.0
    create_timeout_s: float = 30.0
    duration_median_s: float = 5.0
    duration_max_s: float = 20.0
    concurrency: int = 8
    timeout_s: float = 600.0
    seed: int = 7
    strategy: str = "poll"


@dataclass
class ChaosReport:
    config: dict[str, Any]
    runs: int
    terminal: int
    lost: int
    statuses: dict[str, int]
    duplicate_creates: int
    duplicated_runs: list[int]
    api_calls_per_run: float
    calls_by_kind: dict[str, int]
    faults_injected: dict[str, int]
    kills: int
    flushes: int
    worst_extra_delay_s: float | None
    p99_extra_delay_s: float | None
    wall_s: float
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def _durations(cfg: ChaosConfig) -> list[float]:
    rng = random.Random(cfg.seed)
    sigma = 0.6
    return [
        round(
            min(
                cfg.duration_max_s,
                max(1.0, rng.lognormvariate(math.log(cfg.duration_median_s), sigma)),
            ),
            2,
        )
        for _ in range(cfg.runs)
    ]


def run_chaos(cfg: ChaosConfig, progress: Callable[[str], None] = lambda _: None) -> ChaosReport:
    """Run the whole scenario; every child process is stopped before this returns."""
    from simulator.testing import RunningSimulator

    with ExitStack() as stack:
        private = start_private_redis()
        stack.callback(private.stop)
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="runs-chaos-"))
        sim = stack.enter_context(RunningSimulator(seed=cfg.seed))
        r = cfg.fault_rate
        sim.configure(
            fault_429_rate=0.4 * r,
            fault_500_rate=0.4 * r,
            fault_slow_rate=0.2 * r,
            slow_s=cfg.slow_s,
            retry_after_ms=500,
        )
        queue = f"runs-chaos-{uuid.uuid4().hex[:8]}"
        env = {
            **os.environ,
            # Under pytest this process runs tests.settings; the children run the real thing.
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "DATABASE_URL": processes.database_url(),
            "CELERY_BROKER_URL": private.url,
            "CELERY_TASK_DEFAULT_QUEUE": queue,
            "OPENAI_BASE_URL": sim.base_url,
            "OPENAI_API_KEY": "sk-local-simulator",
            "OPENAI_TIMEOUT_S": str(cfg.client_timeout_s),
            "OPENAI_CREATE_TIMEOUT_S": str(cfg.create_timeout_s),
            # Recover in seconds: sweep often, and a claim is stale once no create can still run.
            "RUNS_SWEEP_INTERVAL_S": "1",
            "RUNS_SWEEP_GRACE_S": "2",
            "RUNS_CLAIM_TIMEOUT_S": str(cfg.create_timeout_s + 5),
            "RUNS_LOG_LEVEL": "ERROR",
            "PYTHONUNBUFFERED": "1",
        }
        stack.enter_context(
            processes.pointed_at(broker_url=private.url, queue=queue, openai_base_url=sim.base_url)
        )

        if cfg.strategy == "webhook":
            secret = "whsec_" + "Y2hhb3MtcnVuLXdlYmhvb2stc2VjcmV0LTEyMzQ1Njc4"
            env["OPENAI_WEBHOOK_SECRET"] = secret
            web, web_url = processes.start_web(env)
            stack.callback(processes.stop, web)
            sim.configure(webhook_url=web_url + "/webhooks/openai/", webhook_secret=secret)

        stack.callback(processes.stop, processes.start_beat(env, Path(workdir)))
        workers = [processes.start_worker(env, concurrency=cfg.concurrency, queue=queue)]
        stack.callback(lambda: processes.stop(workers[-1]))

        durations = _durations(cfg)
        flush_at = cfg.flush_at_s
        if flush_at is None:
            flush_at = sorted(durations)[len(durations) // 2]
        run_ids = []
        for i, duration in enumerate(durations):
            outcome = "failed" if i % 10 == 9 else "completed"
            run = create_run(
                f"chaos {i}",
                strategy=cfg.strategy,
                deadline_s=cfg.timeout_s,
                metadata={"sim_duration_s": str(duration), "sim_outcome": outcome},
            )
            start_run.delay(run.pk)
            run_ids.append(run.pk)

        started = time.monotonic()
        kills = flushes = 0
        next_kill = started + cfg.kill_every_s
        while True:
            now = time.monotonic()
            done = Run.objects.filter(pk__in=run_ids, status__in=TERMINAL).count()
            progress(
                f"{done}/{len(run_ids)} terminal, {kills} kills, {flushes} flushes, "
                f"{now - started:.0f} s"
            )
            if done == len(run_ids) or now - started > cfg.timeout_s:
                break
            if now >= next_kill:
                processes.kill(workers[-1])
                kills += 1
                workers.append(
                    processes.start_worker(env, concurrency=cfg.concurrency, queue=queue)
                )
                next_kill = now + cfg.kill_every_s
            if not flushes and now - started >= flush_at:
                redis.Redis.from_url(private.url).flushall()
                flushes += 1
            time.sleep(0.25)
        wall = time.monotonic() - started
        return _report(cfg, run_ids, sim.stats(), kills, flushes, wall)
    raise AssertionError("unreachable")  # pragma: no cover - for type checkers


def _report(
    cfg: ChaosConfig, run_ids: list[int], stats: dict, kills: int, flushes: int, wall: float
) -> ChaosReport:
    runs = list(Run.objects.filter(pk__in=run_ids))
    statuses = Counter(r.status for r in runs)
    terminal = sum(statuses[s] for s in TERMINAL)
    creates = stats.get("creates_by_run_id", {})
    duplicated = sorted(int(k) for k, v in creates.items() if v > 1 and int(k) in set(run_ids))
    objects = stats.get("objects", {})
    delays = []
    for run in runs:
        remote = objects.get(run.remote_id) or {}
        if run.completed_at and remote.get("terminal_at"):
            delays.append(run.completed_at.timestamp() - remote["terminal_at"])
    delays.sort()
    calls = stats.get("calls", {})
    return ChaosReport(
        config=asdict(cfg),
        runs=len(runs),
        terminal=terminal,
        lost=len(runs) - terminal,
        statuses=dict(statuses),
        duplicate_creates=sum(creates[str(k)] - 1 for k in duplicated),
        duplicated_runs=duplicated,
        api_calls_per_run=round(sum(calls.values()) / max(len(runs), 1), 2),
        calls_by_kind=dict(calls),
        faults_injected=stats.get("faults", {}),
        kills=kills,
        flushes=flushes,
        worst_extra_delay_s=round(delays[-1], 3) if delays else None,
        p99_extra_delay_s=round(delays[int(0.99 * (len(delays) - 1))], 3) if delays else None,
        wall_s=round(wall, 1),
    )
