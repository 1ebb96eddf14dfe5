"""The chaos run: many runs while the worker is SIGKILLed, Redis is flushed and the API misbehaves.

It proves the recovery design end to end: every run must end terminal (none lost), and the
simulator's own counts say how many remote creates were doubled and how many tool calls were
answered twice. Used by ``manage.py chaos`` and, at a small size, by the tests.

A kill must test recovery, not starve the system: a worker is killed only once it is *ready*
(its ``worker_ready`` signal, see ``worker_probe``) and has *taken work* since (the simulator
counted at least ``kill_after_calls`` API calls, which only a worker running starts and polls
makes), and never sooner than ``kill_every_s`` after the previous kill. The loop measures
progress, not wall time: it ends when every run is terminal, or when no run has changed status
for ``stuck_after_s`` ("stuck"); ``timeout_s`` only bounds a hang.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import redis
from django.db.models import Max

from project.localredis import start_private_redis
from runs.models import Run, RunEvent, ToolCall
from runs.services import create_run
from runs.status import TERMINAL
from runs.tasks import start_run
from runs_dev import processes
from runs_dev.worker_probe import WorkerProbe

if TYPE_CHECKING:
    from runs_simulator.testing import RunningSimulator

#: The example tool a tool-calling run offers (registered by ``runs_dev``).
TOOL = "add"

Ended = Literal["all_terminal", "stuck", "timeout"]


@dataclass
class ChaosConfig:
    runs: int = 300
    #: Minimum seconds between two kills (and from the start to the first).
    kill_every_s: float = 4.0
    #: API calls a worker must have made since it became ready before it may be killed.
    kill_after_calls: int = 3
    #: Seconds after the first worker is ready to flush Redis; default: the median run duration.
    flush_at_s: float | None = None
    fault_rate: float = 0.05  # of all API calls: 40 % 429, 40 % 500, 20 % slow
    slow_s: float = 4.0
    client_timeout_s: float = 2.0
    create_timeout_s: float = 30.0
    duration_median_s: float = 5.0
    duration_max_s: float = 20.0
    #: Share of runs that offer the ``add`` tool and are asked for one or two tool rounds.
    tool_share: float = 0.0
    concurrency: int = 8
    #: Each run's own deadline: far beyond the expected time, so a slow machine does not make
    #: runs ``expired`` (they are reported apart anyway).
    run_deadline_s: float = 1800.0
    #: End as "stuck" when no run has changed status for this long (longer than the slowest
    #: recovery: a tool call whose worker died is run again after its timeout plus 30 s).
    stuck_after_s: float = 120.0
    #: Only a bound on a hang: the loop normally ends on progress (all terminal, or stuck).
    timeout_s: float = 900.0
    seed: int = 7
    strategy: str = "poll"
    #: ``RUNS_START_CHUNK`` and ``RUNS_START_CONCURRENCY`` of the workers (chunked starts).
    start_chunk: int = 1
    start_concurrency: int = 8


@dataclass
class ChaosReport:
    config: dict[str, Any]
    #: Why the loop ended: "all_terminal", "stuck" (no run changed status for
    #: ``stuck_after_s``) or "timeout" (the hang bound).
    ended: str
    runs: int
    terminal: int
    lost: int
    expired: int
    statuses: dict[str, int]
    duplicate_creates: int
    duplicated_runs: list[int]
    tool_runs: int
    tool_calls: int
    tool_calls_answered_more_than_once: int
    #: Runs that ended ``expired`` out of ``requires_action``, or are still waiting there.
    stuck_rounds: int
    api_calls_per_run: float
    calls_by_kind: dict[str, int]
    faults_injected: dict[str, int]
    kills: int
    #: Per kill: seconds since the start, the worker's seconds to ready, the API calls and the
    #: tasks it had made and started since.
    kill_log: list[dict[str, float]]
    flushes: int
    worst_extra_delay_s: float | None
    p99_extra_delay_s: float | None
    wall_s: float
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


@dataclass
class _Worker:
    """One worker process and what the driver has seen of it."""

    process: subprocess.Popen[bytes]
    spawned_at: float
    ready_at: float | None = None
    calls_at_ready: int = 0
    #: When it will be killed, drawn once it is ready and has taken work.
    kill_at: float | None = None


class _Killer:
    """Runs one worker at a time and SIGKILLs it by the rules in the module docstring."""

    def __init__(
        self,
        cfg: ChaosConfig,
        start: Callable[[], subprocess.Popen[bytes]],
        probe: WorkerProbe,
        sim: RunningSimulator,
        started: float,
    ) -> None:
        self.cfg, self.start, self.probe, self.sim = cfg, start, probe, sim
        self.started = self.last_kill = started
        self.rng = random.Random(cfg.seed + 2)
        self.first_ready: float | None = None
        self.kill_log: list[dict[str, float]] = []
        self.notes: list[str] = []
        self.worker = self._spawn()

    def _spawn(self) -> _Worker:
        return _Worker(self.start(), time.monotonic())

    def _calls_since_ready(self) -> int:
        return _total_calls(self.sim) - self.worker.calls_at_ready

    def step(self, now: float) -> None:
        """Look at the worker once: restart it if it died, note when it is ready, kill it when
        its time has come."""
        worker = self.worker
        if worker.process.poll() is not None:
            self.notes.append(
                f"worker pid {worker.process.pid} exited by itself (code "
                f"{worker.process.returncode}) at {now - self.started:.1f} s; restarted"
            )
            self.worker = self._spawn()
            return
        if worker.ready_at is None:
            if not self.probe.is_ready(worker.process.pid):
                return
            worker.ready_at, worker.calls_at_ready = now, _total_calls(self.sim)
            if self.first_ready is None:
                self.first_ready = now
        if worker.kill_at is None:
            if self._calls_since_ready() < self.cfg.kill_after_calls:
                return
            # At a random moment of its work, as an OOM kill would strike: killing on the very
            # burst of calls that made it eligible would catch nearly every create of that burst
            # before its answer is saved, and double them all.
            every = self.cfg.kill_every_s
            worker.kill_at = max(self.last_kill + every, now + self.rng.uniform(0, every))
        if now < worker.kill_at:
            return
        processes.kill(worker.process)
        self.last_kill = now
        self.kill_log.append(
            {
                "at_s": round(now - self.started, 1),
                "ready_after_s": round(worker.ready_at - worker.spawned_at, 1),
                "api_calls": self._calls_since_ready(),
                "tasks": self.probe.tasks_started(worker.process.pid),
            }
        )
        self.worker = self._spawn()

    def stop(self) -> None:
        processes.stop(self.worker.process)


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


def workload(cfg: ChaosConfig) -> list[dict[str, Any]]:
    """Per run: its simulator metadata and tools. One run in ten fails remotely; a
    ``tool_share`` of the others asks for the ``add`` tool, one or two rounds."""
    plans: list[dict[str, Any]] = []
    for i, duration in enumerate(_durations(cfg)):
        outcome = "failed" if i % 10 == 9 else "completed"
        plans.append(
            {"metadata": {"sim_duration_s": str(duration), "sim_outcome": outcome}, "tools": []}
        )
    eligible = [p for p in plans if p["metadata"]["sim_outcome"] == "completed"]
    share = min(len(eligible), round(cfg.tool_share * cfg.runs))
    for i, plan in enumerate(random.Random(cfg.seed + 1).sample(eligible, share)):
        plan["tools"] = [TOOL]
        plan["metadata"].update(
            sim_tool_rounds=str(1 + i % 2), sim_tool_args=json.dumps({"a": i, "b": 2})
        )
    return plans


def _total_calls(sim: RunningSimulator) -> int:
    return sum(sim.stats(objects=False).get("calls", {}).values())


def _progress_marks(run_ids: list[int]) -> tuple[int, int]:
    """How many runs are terminal, and the newest status change of any: while either moves,
    the runs progress (a tool round moves a run without ending it)."""
    done = Run.objects.filter(pk__in=run_ids, status__in=TERMINAL).count()
    newest = RunEvent.objects.filter(run__in=run_ids).aggregate(newest=Max("id"))["newest"]
    return done, newest or 0


def run_chaos(cfg: ChaosConfig, progress: Callable[[str], None] = lambda _: None) -> ChaosReport:
    """Run the whole scenario; every child process is stopped before this returns."""
    from runs_simulator.testing import RunningSimulator

    with ExitStack() as stack:
        private = start_private_redis()
        stack.callback(private.stop)
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="runs-chaos-")))
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
            "RUNS_START_CHUNK": str(cfg.start_chunk),
            "RUNS_START_CONCURRENCY": str(cfg.start_concurrency),
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

        stack.callback(processes.stop, processes.start_beat(env, workdir))
        probe = WorkerProbe(workdir / "probe")
        probe.directory.mkdir()
        worker_env = {**env, **probe.env()}

        plans = workload(cfg)
        durations = sorted(float(p["metadata"]["sim_duration_s"]) for p in plans)
        flush_at = cfg.flush_at_s if cfg.flush_at_s is not None else durations[len(durations) // 2]
        started = time.monotonic()
        killer = _Killer(
            cfg,
            lambda: processes.start_worker(worker_env, concurrency=cfg.concurrency, queue=queue),
            probe,
            sim,
            started,
        )
        stack.callback(killer.stop)
        run_ids = []
        for i, plan in enumerate(plans):
            run = create_run(
                f"chaos {i}" if not plan["tools"] else f"chaos {i}: what is a + b?",
                strategy=cfg.strategy,
                deadline_s=cfg.run_deadline_s,
                metadata=plan["metadata"],
                tools=plan["tools"],
            )
            start_run.delay(run.pk)
            run_ids.append(run.pk)

        flushes = 0
        seen, last_progress = (0, 0), started
        ended: Ended = "timeout"
        while True:
            now = time.monotonic()
            done, last_event = _progress_marks(run_ids)
            if (done, last_event) != seen:
                seen, last_progress = (done, last_event), now
            progress(
                f"{done}/{len(run_ids)} terminal, {len(killer.kill_log)} kills, {flushes} "
                f"flushes, worker {'ready' if killer.worker.ready_at else 'starting'}, "
                f"{now - started:.0f} s"
            )
            if done == len(run_ids):
                ended = "all_terminal"
                break
            if now - last_progress > cfg.stuck_after_s:
                ended = "stuck"
                break
            if now - started > cfg.timeout_s:
                break
            killer.step(now)
            ready = killer.first_ready
            if not flushes and ready is not None and now - ready >= flush_at:
                redis.Redis.from_url(private.url).flushall()
                flushes += 1
            time.sleep(0.25)
        wall = time.monotonic() - started
        notes = killer.notes
        if ended == "stuck":
            notes.append(f"ended stuck: no run changed status for {now - last_progress:.0f} s")
        elif ended == "timeout":
            notes.append(f"ended at the hang bound ({cfg.timeout_s:.0f} s) while runs progressed")
        return _report(cfg, run_ids, sim.stats(), killer.kill_log, flushes, wall, ended, notes)
    raise AssertionError("unreachable")  # pragma: no cover - for type checkers


def duplicate_creates(runs: list[Run], stats: dict[str, Any]) -> dict[int, int]:
    """Extra first creates per run (only runs that have any).

    On the Responses API every tool round is one more create (carrying the outputs), counted by
    the simulator per run id too: those are told apart by the outputs each call received (the
    simulator asks one call per round). A doubled round is reported as a call answered more
    than once, not here.
    """
    creates = stats.get("creates_by_run_id", {})
    outputs = stats.get("tool_outputs_by_call_id", {})
    call_ids: dict[int, list[str]] = defaultdict(list)
    for run_id, call_id in ToolCall.objects.filter(run__in=runs).values_list("run_id", "call_id"):
        call_ids[run_id].append(call_id)
    extra = {}
    for run in runs:
        followups = 0
        if run.backend == "responses":
            followups = sum(outputs.get(c, 0) for c in call_ids[run.pk])
        doubled = creates.get(str(run.pk), 0) - followups - 1
        if doubled > 0:
            extra[run.pk] = doubled
    return extra


def _stuck_round_note(run: Run, stats: dict[str, Any]) -> str:
    """What a stuck round looks like from both sides, for whoever debugs the engine."""
    outputs = stats.get("tool_outputs_by_call_id", {})
    calls = "; ".join(
        f"round {c.round} {c.call_id} asked by {c.remote_id}: {c.state}, the simulator "
        f"received {outputs.get(c.call_id, 0)} output(s)"
        for c in ToolCall.objects.filter(run=run).order_by("round", "pk")
    )
    return f"run {run.pk} stuck in a tool round ({run.status}, remote {run.remote_id}): {calls}"


def _report(
    cfg: ChaosConfig,
    run_ids: list[int],
    stats: dict[str, Any],
    kill_log: list[dict[str, float]],
    flushes: int,
    wall: float,
    ended: Ended,
    notes: list[str],
) -> ChaosReport:
    runs = list(Run.objects.filter(pk__in=run_ids))
    statuses = Counter(r.status for r in runs)
    terminal = sum(statuses[s] for s in TERMINAL)
    duplicated = duplicate_creates(runs, stats)
    tool_runs = [r for r in runs if r.tools]
    expired_waiting = set(
        RunEvent.objects.filter(
            run__in=runs, to_status="expired", from_status="requires_action"
        ).values_list("run", flat=True)
    )
    stuck = [r for r in runs if r.status == "requires_action" or r.pk in expired_waiting]
    notes = notes + [_stuck_round_note(run, stats) for run in stuck]
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
        ended=ended,
        runs=len(runs),
        terminal=terminal,
        lost=len(runs) - terminal,
        expired=statuses.get("expired", 0),
        statuses=dict(statuses),
        duplicate_creates=sum(duplicated.values()),
        duplicated_runs=sorted(duplicated),
        tool_runs=len(tool_runs),
        tool_calls=ToolCall.objects.filter(run__in=runs).count(),
        tool_calls_answered_more_than_once=sum(
            1 for count in stats.get("tool_outputs_by_call_id", {}).values() if count > 1
        ),
        stuck_rounds=len(stuck),
        api_calls_per_run=round(sum(calls.values()) / max(len(runs), 1), 2),
        calls_by_kind=dict(calls),
        faults_injected=stats.get("faults", {}),
        kills=len(kill_log),
        kill_log=kill_log,
        flushes=flushes,
        worst_extra_delay_s=round(delays[-1], 3) if delays else None,
        p99_extra_delay_s=round(delays[int(0.99 * (len(delays) - 1))], 3) if delays else None,
        wall_s=round(wall, 1),
        notes=notes,
    )
