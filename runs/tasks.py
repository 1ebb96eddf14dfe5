"""Celery tasks: thin wrappers over the engine, with stable names. No task ever sleeps.

The engine enqueues these by name (``runs.engine.enqueue``), never by importing this module, so
the dependency points one way. Queues follow ``RUNS_QUEUES`` by kind (docs/celery.md): the engine
names the queue when it sends, and ``RoutedTask`` does the same for a host's own
``start_run.delay(run_id)``, so a view's start lands where the engine's would.

Each task that touches a run is ``acks_late`` with ``reject_on_worker_lost``: a worker killed
mid-task gets the message redelivered, and the engine's claims make the second delivery harmless
(a start already claimed does nothing; a poll whose ticket moved on exits without an API call; a
tool call already running elsewhere is not run again).
"""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from .engine import batch_files, batch_lifecycle, batch_poll, cancel, enqueue, lifecycle, tool_round
from .engine import sweep as recovery


class RoutedTask(Task):
    """A task that goes to the queue ``RUNS_QUEUES`` names for its usual kind.

    Why not ``task_routes``: that is the host's setting, and a host adding ``runs`` should not
    have to repeat our queue map in it. An explicit ``queue=`` (the engine's wakes) still wins.
    A start also learns here whether its result is kept (``enqueue.route``).
    """

    def apply_async(self, args: Any = None, kwargs: Any = None, *rest: Any, **options: Any) -> Any:
        return super().apply_async(args, kwargs, *rest, **enqueue.route(self.name, options))


@shared_task(base=RoutedTask, name="runs.start_run", acks_late=True, reject_on_worker_lost=True)
def start_run(run_id: int) -> dict[str, Any]:
    """Create run ``run_id`` at OpenAI and arm its first poll. Its result (the remote id and
    status) is kept unless ``RUNS_KEEP_START_RESULTS`` is off."""
    return lifecycle.start(run_id)


@shared_task(
    base=RoutedTask,
    name="runs.poll_run",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def poll_run(run_id: int, generation: int) -> str:
    """One poll tick for run ``run_id`` holding ticket ``generation`` (no result row per tick)."""
    return lifecycle.poll(run_id, generation)


@shared_task(name="runs.poll_due", ignore_result=True)
def poll_due() -> dict[str, int]:
    """Batched polling (the runs polled by due time: webhook runs' safety nets by default, every
    run with ``RUNS_POLL_MODE = "batched"``): tick every due run, up to a batch, from beat. Not
    ``acks_late``: a batch lost with its worker is due again when its lease ends."""
    return batch_poll.poll_due()


@shared_task(base=RoutedTask, name="runs.cancel_run", acks_late=True, reject_on_worker_lost=True)
def cancel_run(run_id: int) -> str:
    """Ask OpenAI to cancel run ``run_id`` (moved to ``cancelling`` by ``services.cancel_run``)."""
    return cancel.send_cancel(run_id)


@shared_task(name="runs.sweep", ignore_result=True)
def sweep() -> dict[str, int]:
    """Recovery sweep, run by Celery beat every ``RUNS_SWEEP_INTERVAL_S`` (``engine.sweep``)."""
    return recovery.sweep().as_dict()


@shared_task(
    base=RoutedTask,
    name="runs.resume_tool_round",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def resume_tool_round(run_id: int) -> str:
    """Submit a round whose outputs are all in (the tools ran, or a person gave the last one)."""
    return tool_round.resume(run_id)


@shared_task(
    base=RoutedTask,
    name="runs.execute_tool_calls",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def execute_tool_calls(run_id: int, round_no: int) -> str:
    """Run the automatic tool calls of a round: user code runs in this task, never in a poll."""
    return tool_round.execute(run_id, round_no)


#: A batch task moves files of up to 200 MB (an upload; two downloads and the settle): the
#: project's 60 s time limit, under the prefork pool, would kill every one of them. Its own is
#: the poll's lease (``batch_files.lease_s``): a task killed at it is not redelivered (Celery
#: acknowledges a timed-out task), and the sweep takes the batch up once the lease has ended.
BATCH_SOFT_LIMIT_S = batch_files.lease_s(files=2)
BATCH_LIMITS = {"soft_time_limit": BATCH_SOFT_LIMIT_S, "time_limit": BATCH_SOFT_LIMIT_S + 30}


@shared_task(
    base=RoutedTask,
    name="runs.submit_batch",
    acks_late=True,
    reject_on_worker_lost=True,
    **BATCH_LIMITS,
)
def submit_batch(batch_id: int) -> dict[str, Any]:
    """Upload batch ``batch_id``'s lines and create it at OpenAI, once (its submit claim)."""
    return batch_lifecycle.submit(batch_id)


@shared_task(
    base=RoutedTask,
    name="runs.poll_batch",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    **BATCH_LIMITS,
)
def poll_batch(batch_id: int, generation: int) -> str:
    """One poll tick for batch ``batch_id`` holding ticket ``generation``; at its end, settles
    its runs from the output and error files."""
    return batch_lifecycle.poll(batch_id, generation)


@shared_task(base=RoutedTask, name="runs.cancel_batch", acks_late=True, reject_on_worker_lost=True)
def cancel_batch(batch_id: int) -> str:
    """Ask OpenAI to cancel batch ``batch_id`` (moved to ``cancelling`` by
    ``services.cancel_batch``)."""
    return batch_lifecycle.send_cancel(batch_id)
