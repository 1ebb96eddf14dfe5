"""``manage.py demo``: fifty runs, start to finish, through a real worker, Redis and simulator.

Starts what it needs as child processes (the simulator, a Celery worker, and a private Redis when
none answers), shows a live table while the runs go, prints a summary, and stops every process it
started, also on Ctrl-C. Exit 0 when every run reached a terminal status.
"""

from __future__ import annotations

import base64
import json
import os
import random
import secrets
import signal
import tempfile
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from statistics import mean
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.console import Console
from rich.live import Live
from rich.table import Table

from project.localredis import RedisUnavailable, ensure_redis
from runs.management.commands._args import bad, check_seconds
from runs.models import Run, ToolCall
from runs.schedule import Schedule
from runs.schedule import schedule_for as poll_schedule
from runs.services import create_run
from runs.status import TERMINAL
from runs.tasks import start_run
from runs_dev import processes

#: The demo's mix of remote outcomes (the rest complete); one run outlives its deadline.
OUTCOMES = ["failed"] * 4 + ["incomplete"] * 3 + ["cancelled"] * 2
#: Runs that call the example ``add`` tool (one or two rounds) before they answer.
TOOL_RUNS = 5
STATUS_STYLE = {
    "completed": "green",
    "failed": "red",
    "incomplete": "yellow",
    "cancelled": "magenta",
    "expired": "red",
    "in_progress": "cyan",
    "queued": "blue",
    "pending": "white",
    "requires_action": "bright_yellow",
    "cancelling": "magenta",
}


def demo_workload(n: int, seed: int) -> list[dict[str, str]]:
    """Per-run simulator metadata: durations spread over 1-20 s, a mix of outcomes."""
    rng = random.Random(seed)
    plans = []
    for i in range(n):
        duration = round(1 + 19 * (i / max(n - 1, 1)) ** 1.5, 2)
        plans.append({"sim_duration_s": str(duration), "sim_outcome": "completed"})
    outcomes = OUTCOMES[: max(0, n - 2)]
    for plan, outcome in zip(rng.sample(plans, len(outcomes)), outcomes, strict=True):
        plan["sim_outcome"] = outcome
    if n >= 2:
        plans[rng.randrange(n)].update(
            sim_duration_s="120", sim_outcome="completed", demo_deadline_s="15"
        )
    # Tool runs: short turns (each round is one more turn), answered by the worker itself.
    short = [p for p in plans if p["sim_outcome"] == "completed" and float(p["sim_duration_s"]) < 4]
    for i, plan in enumerate(rng.sample(short, min(TOOL_RUNS, len(short)))):
        plan.update(
            demo_tools="add",
            sim_tool_rounds=str(1 + i % 2),
            sim_tool_args=json.dumps({"a": i + 1, "b": 2}),
        )
    rng.shuffle(plans)
    return plans


class Command(BaseCommand):
    help = "Run the end-to-end demo against the local simulator (no API key needed)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--runs", type=int, default=50)
        parser.add_argument("--concurrency", type=int, default=4, help="worker threads")
        parser.add_argument("--timeout", type=float, default=100.0)
        parser.add_argument("--seed", type=int, default=42)

    def handle(self, *args: Any, **opts: Any) -> None:
        if not 1 <= opts["runs"] <= 10_000:
            raise bad("--runs must be between 1 and 10000")
        if opts["concurrency"] < 1:
            raise bad("--concurrency must be at least 1")
        check_seconds("--timeout", opts["timeout"])
        console = Console()
        with ExitStack() as stack:
            # SIGTERM ends the demo like Ctrl-C: the ExitStack still stops every child.
            signal.signal(signal.SIGTERM, _interrupt)
            try:
                self._run(stack, console, opts)
            except KeyboardInterrupt:
                console.print("[yellow]interrupted: stopping the worker and the simulator[/]")
                raise CommandError("interrupted", returncode=130) from None

    def _run(self, stack: ExitStack, console: Console, opts: dict[str, Any]) -> None:
        from runs_simulator.testing import RunningSimulator

        try:
            broker, private = ensure_redis(settings.CELERY_BROKER_URL)
        except RedisUnavailable as exc:
            raise CommandError(str(exc)) from exc
        if private:
            stack.callback(private.stop)
            console.print(f"Redis: started a private server on port {private.port}")
        else:
            console.print(f"Redis: using {broker.split('@')[-1]}")
        sim = stack.enter_context(RunningSimulator(seed=opts["seed"]))
        console.print(f"Simulator: {sim.base_url}")

        # A private queue: the demo's worker never takes another app's tasks, nor they ours.
        queue = f"runs-demo-{uuid.uuid4().hex[:8]}"
        env = {
            **os.environ,
            "CELERY_BROKER_URL": broker,
            "CELERY_TASK_DEFAULT_QUEUE": queue,
            "OPENAI_BASE_URL": sim.base_url,
            "OPENAI_API_KEY": "sk-local-simulator",
            "RUNS_LOG_LEVEL": "WARNING",
        }
        if settings.RUNS_STRATEGY == "webhook" and settings.RUNS_BACKEND == "responses":
            secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
            env["OPENAI_WEBHOOK_SECRET"] = secret
            try:
                web, web_url = processes.start_web(env)
            except processes.ChildFailed as exc:
                raise CommandError(str(exc)) from exc
            stack.callback(processes.stop, web)
            webhook_url = web_url + "/webhooks/openai/"
            sim.configure(webhook_url=webhook_url, webhook_secret=secret)
            console.print(f"Webhooks: the simulator signs and posts events to {webhook_url}")
        stack.enter_context(
            processes.pointed_at(broker_url=broker, queue=queue, openai_base_url=sim.base_url)
        )
        worker = processes.start_worker(env, concurrency=opts["concurrency"], queue=queue)
        stack.callback(processes.stop, worker)
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="runs-demo-"))
        stack.callback(processes.stop, processes.start_beat(env, Path(workdir)))
        console.print(
            f"Worker: pid {worker.pid}, {opts['concurrency']} threads, queue {queue}; "
            "beat runs the recovery sweep and runs.poll_due (safety nets, polls that fell behind)"
        )

        plans = demo_workload(opts["runs"], opts["seed"])
        started = time.monotonic()
        run_ids = []
        for i, plan in enumerate(plans):
            deadline = float(plan.pop("demo_deadline_s", 0)) or None
            tools = [t for t in plan.pop("demo_tools", "").split(",") if t]
            run = create_run(
                f"Demo question {i + 1}", metadata=plan, deadline_s=deadline, tools=tools
            )
            start_run.delay(run.pk)
            run_ids.append(run.pk)

        with Live(console=console, refresh_per_second=4) as live:
            while True:
                runs = list(Run.objects.filter(pk__in=run_ids).order_by("pk"))
                live.update(_table(runs, time.monotonic() - started))
                if all(r.status in TERMINAL for r in runs):
                    break
                if worker.poll() is not None:
                    raise CommandError(f"the worker exited with code {worker.returncode}")
                if time.monotonic() - started > opts["timeout"]:
                    break
                time.sleep(0.25)
        wall = time.monotonic() - started
        self._summary(console, runs, sim.stats(), wall, plans)
        if not all(r.status in TERMINAL for r in runs):
            raise CommandError(f"not every run finished within {opts['timeout']:.0f} s")

    def _summary(
        self,
        console: Console,
        runs: list[Run],
        stats: dict,
        wall: float,
        plans: list[dict[str, str]],
    ) -> None:
        objects = stats.get("objects", {})
        # The schedule predicts one response's polls: compare on the runs without tool rounds.
        tool_runs = [r for r in runs if r.tools]
        plain = [r for r in runs if not r.tools] or runs
        retrieves = [objects.get(r.remote_id, {}).get("retrieve", 0) for r in plain]
        schedule: Schedule = poll_schedule(runs[0].strategy)
        durations = {str(r.pk): float(r.metadata.get("sim_duration_s", 0)) for r in plain}
        predicted = [
            schedule.predicted_polls(
                min(durations[str(r.pk)], (r.deadline_at - r.created_at).total_seconds())
            )
            for r in plain
        ]
        table = Table(title="Demo summary")
        table.add_column("figure")
        table.add_column("value", justify="right")
        for status, count in sorted(Counter(r.status for r in runs).items()):
            table.add_row(f"runs {status}", str(count))
        table.add_row("strategy", runs[0].strategy)
        table.add_row("webhook events applied", str(sum(r.webhook_events for r in runs)))
        deliveries = stats.get("webhooks", {})
        if deliveries.get("sent"):
            table.add_row(
                "webhooks sent / delivered / failed",
                f"{deliveries['sent']} / {deliveries.get('delivered', 0)} / "
                f"{deliveries.get('failed', 0)}",
            )
        table.add_row("retrieves per run (mean)", f"{mean(retrieves):.2f}")
        table.add_row("retrieves per run (max)", str(max(retrieves)))
        table.add_row("schedule predicts (mean)", f"{mean(predicted):.2f}")
        table.add_row("API calls in total", str(sum(stats.get("calls", {}).values())))
        table.add_row(
            "API calls per run", f"{sum(stats.get('calls', {}).values()) / len(runs):.2f}"
        )
        if tool_runs:
            answered = ToolCall.objects.filter(run__in=tool_runs, state=ToolCall.State.SUBMITTED)
            rounds = sum(int(r.metadata.get("sim_tool_rounds", 0)) for r in tool_runs)
            table.add_row(
                "tool-calling runs (completed)",
                f"{len(tool_runs)} ({sum(r.status == 'completed' for r in tool_runs)})",
            )
            table.add_row("tool calls answered / asked", f"{answered.count()} / {rounds}")
            table.add_row(
                "API calls per tool-calling run", f"{mean(r.api_calls for r in tool_runs):.2f}"
            )
        # A tool round creates a new response (Responses): count only duplicate *first* creates.
        extra = {str(r.pk): int(r.metadata.get("sim_tool_rounds", 0)) for r in tool_runs}
        dupes = sum(
            1
            for run_id, count in stats.get("creates_by_run_id", {}).items()
            if count > 1 + (extra.get(run_id, 0) if runs[0].backend == "responses" else 0)
        )
        table.add_row("duplicate remote creates", str(dupes))
        table.add_row("wall time", f"{wall:.1f} s")
        console.print(table)


def _table(runs: list[Run], elapsed: float) -> Table:
    counts = Counter(r.status for r in runs)
    done = sum(counts[s] for s in TERMINAL)
    table = Table(
        title=f"{done}/{len(runs)} runs terminal after {elapsed:.1f} s",
        caption="  ".join(
            f"[{STATUS_STYLE.get(s, 'white')}]{s} {n}[/]" for s, n in sorted(counts.items())
        ),
    )
    for column in ("run", "status", "polls", "run", "status", "polls"):
        table.add_column(column, justify="right" if column != "status" else "left")
    shown = runs[:40]  # the caption counts them all; forty rows fit a terminal
    half = (len(shown) + 1) // 2
    for left, right in zip(shown[:half], shown[half:] + [None], strict=False):
        cells = _cells(left) + (_cells(right) if right else ["", "", ""])
        table.add_row(*cells)
    return table


def _cells(run: Run) -> list[str]:
    style = STATUS_STYLE.get(run.status, "white")
    return [str(run.pk), f"[{style}]{run.status}[/]", str(run.polls)]


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM ends the demo like Ctrl-C, so the ExitStack still stops every child."""
    raise KeyboardInterrupt
