"""Sending the engine's tasks by their registered names, each to the queue of its kind.

The engine sits below ``tasks.py`` (which only wraps engine functions), so it must not import it:
it asks the current Celery app for a signature by name. ``Signature.apply_async`` resolves the
registered task when this process has it (honouring its options and ``task_always_eager``) and
falls back to ``send_task`` otherwise (a web process that never imported ``runs.tasks``).

Queues are chosen here, by *kind*, not by Celery's ``task_routes``: routes are keyed by task name,
and a wake (a webhook's or an operator's "poll now") is the same ``runs.poll_run`` as a scheduled
poll, yet must not wait behind the backlog of scheduled polls and starts. ``RUNS_QUEUES`` maps a
kind to a queue name; a kind it leaves at None (the default for all) is sent with no queue, so
the host's ``task_routes`` and default queue decide, as before queues existed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any, Literal, TypeVar

from celery import current_app

from ..conf import settings

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The fewest overdue messages the sweep adds per pass and kind, however deep their queue
#: (``room``).
RESCUE_FLOOR = 10

START_RUN = "runs.start_run"
POLL_RUN = "runs.poll_run"
CANCEL_RUN = "runs.cancel_run"
RESUME_TOOL_ROUND = "runs.resume_tool_round"
EXECUTE_TOOL_CALLS = "runs.execute_tool_calls"
SUBMIT_BATCH = "runs.submit_batch"
POLL_BATCH = "runs.poll_batch"
CANCEL_BATCH = "runs.cancel_batch"

#: The kinds of work ``RUNS_QUEUES`` routes (docs/celery.md, "Queues and routing").
Kind = Literal["start", "poll", "wake", "tool"]
KINDS: tuple[Kind, ...] = ("start", "poll", "wake", "tool")

#: Each task's kind when the caller does not say. A poll is "poll" unless sent as a wake
#: (``writer.wake``). A cancel travels as a wake: a person asked, and it is one short call. The
#: submit after a tool round goes with the tools: it is the round's second half.
KIND_OF: dict[str, Kind] = {
    START_RUN: "start",
    POLL_RUN: "poll",
    CANCEL_RUN: "wake",
    RESUME_TOOL_ROUND: "tool",
    EXECUTE_TOOL_CALLS: "tool",
    # A batch's upload and create are its start; its polls and cancels travel like a run's.
    SUBMIT_BATCH: "start",
    POLL_BATCH: "poll",
    CANCEL_BATCH: "wake",
}


def queue_for(name: str, kind: Kind | None = None) -> str | None:
    """The queue ``RUNS_QUEUES`` names for this task and kind; None for Celery's own routing."""
    chosen = kind or KIND_OF.get(name)
    if chosen is None:
        return None
    return (settings.RUNS_QUEUES or {}).get(chosen) or None


def own_queue(kind: Kind) -> bool:
    """Whether ``RUNS_QUEUES`` sends ``kind`` to a queue that nothing else is sent to: no other
    kind, and not the default queue (where kinds left at None and ``runs.sweep`` go)."""
    queues = settings.RUNS_QUEUES or {}
    mine = queues.get(kind)
    if not mine or mine == current_app.conf.task_default_queue:
        return False
    return all(queues.get(other) != mine for other in KINDS if other != kind)


def route(name: str, options: dict[str, Any], kind: Kind | None = None) -> dict[str, Any]:
    """``options`` with what the caller left out filled in: the queue of the task's kind, and
    ``ignore_result`` for a start when ``RUNS_KEEP_START_RESULTS`` is off (per message, so a
    host's own ``start_run.delay`` and the engine's retries agree)."""
    if options.get("queue") is None:
        queue = queue_for(name, kind)
        if queue is not None:
            options["queue"] = queue
    if name == START_RUN and not settings.RUNS_KEEP_START_RESULTS:
        options.setdefault("ignore_result", True)
    return options


def send(
    name: str,
    *args: Any,
    countdown: float | None = None,
    kind: Kind | None = None,
    producer: Any = None,
) -> None:
    """Enqueue task ``name`` with positional ``args``, after ``countdown`` seconds if given, on
    the queue of ``kind`` (default: the task's usual kind, ``KIND_OF``); through ``producer``
    when given (``send_all``'s)."""
    options: dict[str, Any] = {}
    if countdown is not None and countdown > 0:
        options["countdown"] = countdown
    if producer is not None:
        options["producer"] = producer
    current_app.signature(name, args=args).apply_async(**route(name, options, kind))


def send_all(tasks: Sequence[tuple[str, tuple[Any, ...], float | None]]) -> None:
    """Enqueue several (name, args, countdown) at once: one producer, and on Redis one round trip
    (kombu's ``Producer.batch``, a pipeline; other brokers publish each message as it comes).

    Why: a chunk of starts arms a poll per run, and a publish each, with a Redis client made for
    every one, was a fifth of a chunked start's CPU. A failure propagates as a failed ``send``
    would; which of the batch's messages landed is then uncertain (kombu's pipeline is not a
    transaction), and Celery's publish retry does not apply to the flush. Either way nothing is
    stranded: a run whose poll was not sent is overdue after ``RUNS_SWEEP_GRACE_S`` and the
    sweep wakes it, and a poll sent twice holds a ticket only one can use.
    """
    if len(tasks) <= 1:
        for name, args, countdown in tasks:
            send(name, *args, countdown=countdown)
        return
    with current_app.producer_or_acquire() as producer:
        batch = getattr(producer, "batch", None)  # kombu 5.7 on
        with batch() if batch is not None else nullcontext():
            for name, args, countdown in tasks:
                send(name, *args, countdown=countdown, producer=producer)


def waiting(name: str, kind: Kind | None = None) -> int | None:
    """How many messages wait for a worker in the queue task ``name`` of ``kind`` is sent to;
    None when the broker cannot say.

    Why: a message still queued behind a backlog and a lost one look the same from the
    database (the run is overdue); the queue tells them apart (``sweep``). Countdowns a worker
    already holds have left the queue and are not counted. One passive declare, on a
    connection of its own: Redis counts the list (a queue with nothing in it has no list, hence
    "not found" is 0), RabbitMQ its ready messages.
    """
    queue = "?"
    try:
        # Inside the try: a host's route may name an exchange and no queue (nothing to count).
        chosen = current_app.amqp.router.route(route(name, {}, kind), name).get("queue")
        if chosen is None:
            return None
        queue = chosen.name
        with current_app.connection_for_read() as conn:
            try:
                with conn.channel() as channel:
                    return int(channel.queue_declare(queue=queue, passive=True).message_count)
            except conn.channel_errors:
                return 0
    except Exception as exc:  # noqa: BLE001 - unknown is an answer: the caller acts as before
        log.warning("could not count the messages waiting in %s: %s", queue, exc)
        return None


def room(
    name: str, kind: Kind, batch: int, candidates: list[T], expected: int | None = None
) -> list[T]:
    """The first of ``candidates`` (most urgent first) that the sweep may add as ``name``
    messages to their queue: ``batch`` less what already waits there, but never fewer than
    ``RESCUE_FLOOR`` (all of them when the broker cannot say). The broker is asked only when
    there is something to add.

    ``expected``, when the caller can count it: how many messages would wait there had none been
    lost (in a queue of starts alone: one per run waiting to start). No more than that less what
    waits can be missing, so no more are added: a queue of starts 700 deep for 700 runs waiting
    lost none, however far below ``batch`` it is. Messages of other kinds in the queue would
    read as starts, hence only for a queue of its own (``own_queue``).

    Why the floor: a queue that stays a batch deep (overload, or a host's small
    ``RUNS_SWEEP_BATCH``) must not hold a lost message back for ever; the most overdue few still
    go each pass, a load that does not grow with the backlog.
    """
    if not candidates:
        return []
    depth = waiting(name, kind)
    if depth is None:
        return candidates
    ceiling = batch if expected is None else min(batch, expected)
    allowed = max(RESCUE_FLOOR, ceiling - depth)
    if allowed < len(candidates):
        log.warning(
            "sweep: %d messages wait in the %s queue; of %d to add, adding the first %d, most "
            "urgent first (the rest are most likely among those waiting)",
            depth,
            kind,
            len(candidates),
            allowed,
        )
    return candidates[:allowed]
