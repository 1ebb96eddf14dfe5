"""Celery tasks: thin wrappers over ``tracking``. No task ever sleeps; waiting is a countdown.

Both tasks are ``acks_late`` with ``reject_on_worker_lost``: a worker killed mid-task gets the
message redelivered, and the claims in ``tracking`` make the second delivery harmless (a start
already claimed does nothing; a poll whose ticket moved on exits without an API call).
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from . import tracking


@shared_task(name="runs.start_run", acks_late=True, reject_on_worker_lost=True)
def start_run(run_id: int) -> dict[str, Any]:
    """Create run ``run_id`` at OpenAI and arm its first poll. Its result is kept."""
    return tracking.start(run_id)


@shared_task(name="runs.poll_run", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def poll_run(run_id: int, generation: int) -> str:
    """One poll tick for run ``run_id`` holding ticket ``generation`` (no result row per tick)."""
    return tracking.poll(run_id, generation)


@shared_task(name="runs.cancel_run", acks_late=True, reject_on_worker_lost=True)
def cancel_run(run_id: int) -> str:
    """Ask OpenAI to cancel run ``run_id`` (moved to ``cancelling`` by ``services.cancel_run``)."""
    from . import cancelling

    return cancelling.send_cancel(run_id)


@shared_task(name="runs.sweep", ignore_result=True)
def sweep() -> dict[str, int]:
    """Recovery sweep, run by Celery beat every ``RUNS_SWEEP_INTERVAL_S`` (see ``runs.sweep``)."""
    from .sweep import sweep as run_sweep

    return run_sweep().as_dict()


@shared_task(
    name="runs.resume_tool_round", acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def resume_tool_round(run_id: int) -> str:
    """Submit a round whose last manual output just arrived (``services.submit_tool_output``).

    A redelivery is harmless: the round's claim lets one submission through, and a run no longer
    in ``requires_action`` is skipped.
    """
    from . import tool_loop

    return tool_loop.resume(run_id)
