"""Celery tasks: thin wrappers over the engine, with stable names. No task ever sleeps.

The engine enqueues these by name (``runs.engine.enqueue``), never by importing this module, so
the dependency points one way. Routing to queues is configuration (``task_routes``), not code.

Each task that touches a run is ``acks_late`` with ``reject_on_worker_lost``: a worker killed
mid-task gets the message redelivered, and the engine's claims make the second delivery harmless
(a start already claimed does nothing; a poll whose ticket moved on exits without an API call; a
tool call already running elsewhere is not run again).
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from .engine import cancel, lifecycle, tool_round
from .engine import sweep as recovery


@shared_task(name="runs.start_run", acks_late=True, reject_on_worker_lost=True)
def start_run(run_id: int) -> dict[str, Any]:
    """Create run ``run_id`` at OpenAI and arm its first poll. Its result is kept."""
    return lifecycle.start(run_id)


@shared_task(name="runs.poll_run", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def poll_run(run_id: int, generation: int) -> str:
    """One poll tick for run ``run_id`` holding ticket ``generation`` (no result row per tick)."""
    return lifecycle.poll(run_id, generation)


@shared_task(name="runs.cancel_run", acks_late=True, reject_on_worker_lost=True)
def cancel_run(run_id: int) -> str:
    """Ask OpenAI to cancel run ``run_id`` (moved to ``cancelling`` by ``services.cancel_run``)."""
    return cancel.send_cancel(run_id)


@shared_task(name="runs.sweep", ignore_result=True)
def sweep() -> dict[str, int]:
    """Recovery sweep, run by Celery beat every ``RUNS_SWEEP_INTERVAL_S`` (``engine.sweep``)."""
    return recovery.sweep().as_dict()


@shared_task(
    name="runs.resume_tool_round", acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def resume_tool_round(run_id: int) -> str:
    """Submit a round whose outputs are all in (the tools ran, or a person gave the last one)."""
    return tool_round.resume(run_id)


@shared_task(
    name="runs.execute_tool_calls", acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def execute_tool_calls(run_id: int, round_no: int) -> str:
    """Run the automatic tool calls of a round: user code runs in this task, never in a poll."""
    return tool_round.execute(run_id, round_no)
