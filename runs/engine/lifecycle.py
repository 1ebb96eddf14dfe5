"""The two ticks every run goes through: ``start`` creates it at OpenAI exactly once, ``poll``
looks at it once per ticket. Each computes a decision and ends in ``answers.conclude``.

Nothing here sleeps: a wait is a decision's ``poll_in_s`` (or ``start_in_s``), which the writer
turns into a stored due time and a Celery countdown.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta
from typing import Any

from django.utils import timezone

from .. import budget, deadline, metrics
from ..backends.base import OutgoingMessage
from ..backends.registry import get_backend
from ..models import Message, Run, Thread
from ..schedule import next_delay, schedule_for
from ..status import ACTIVE, TERMINAL, EventSource, RunStatus, Strategy
from . import answers, events, expiry, tool_round, writer
from .decisions import Counters, Decision

log = logging.getLogger(__name__)

#: A poll that fires this much before its run's due time is a hop of a long wait, not a tick.
HOP_SLACK_S = 0.5


def start(run_id: int) -> dict[str, Any]:
    """Create the run at OpenAI exactly once, then arm its first poll."""
    run = writer.claim_start(run_id)
    if run is None:
        # A redelivered or duplicated start_run: someone already created (or is creating) it.
        return {"run_id": run_id, "started": False, "reason": "already claimed or not pending"}
    wait = budget.take("create")
    if wait > 0:
        writer.apply(Decision(run_id, "deferred", start_in_s=wait))
        return {"run_id": run_id, "started": False, "deferred_s": wait}
    if run.batch_id is not None:
        # Its batch sends it (services.submit_batch takes its start claim); never twice.
        return {"run_id": run_id, "started": False, "reason": f"belongs to batch {run.batch_id}"}
    backend = get_backend(run.backend)
    calls = Counters()
    try:
        thread_remote_id = run.thread_remote_id
        if not thread_remote_id:
            calls += Counters(api_calls=1)
            created = backend.create_thread(run)
            thread_remote_id = Thread.objects.keep_remote_id(run.thread_id, created)
        messages = list(Message.objects.unsent(run.thread_id))
        calls += Counters(api_calls=1)
        state = backend.create(
            run, thread_remote_id, [OutgoingMessage(m.role, m.content) for m in messages]
        )
    except Exception as exc:  # noqa: BLE001 - every failure goes through the error policy
        metrics.count_api_call("create", calls.api_calls)
        return _start_failed(run, exc, calls)
    metrics.count_api_call("create", calls.api_calls)
    Message.objects.mark_sent([m.pk for m in messages])
    later = deadline.for_new_response(run)  # a window counts from now, not from create_run
    if later is not None:
        run.deadline_at = later
    schedule = schedule_for(run.strategy, run.completion_window)
    delay = next_delay(schedule, 0, remaining_s=deadline.remaining_s(run))
    move = answers.move_to(run, state, EventSource.CREATE)
    if later is not None:
        move = replace(move, fields={**move.fields, "deadline_at": later})
    changed = writer.started(run_id, move, run.poll_generation, delay, calls)
    if not changed and state.status not in TERMINAL:
        status = Run.objects.filter(pk=run_id).values_list("status", flat=True).get()
        if status == RunStatus.CANCELLED:
            # Cancelled by a user while we were creating it: do not leave it running remotely.
            run.remote_id = state.remote_id
            answers.cancel_remote_quietly(run)
    elif state.status in ACTIVE and run.strategy == Strategy.WEBHOOK:
        # A webhook may have beaten us here (it arrived before the remote id was saved).
        events.apply_waiting(run_id, state.remote_id)
    return {"run_id": run_id, "started": True, "remote_id": state.remote_id, "status": state.status}


def _start_failed(run: Run, exc: BaseException, calls: Counters) -> dict[str, Any]:
    decision = answers.decide_error(run, exc, None, calls, what="create", source=EventSource.CREATE)
    answers.conclude(run, decision)
    if decision.start_in_s is not None:
        return {"run_id": run.pk, "started": False, "retry_in": decision.start_in_s}
    return {"run_id": run.pk, "started": False, "error": decision.move.fields["last_error_code"]}


def poll(run_id: int, ticket: int) -> str:
    """One poll tick: at most one retrieve, then re-arm or stop. Returns what happened."""
    run = writer.claim_poll(run_id, ticket)
    if run is None:
        return "skipped"
    return answers.conclude(run, decide_poll(run))


def decide_poll(run: Run) -> Decision:
    """The decision of one tick for a run whose ticket was just claimed (as read by the claim)."""
    ticket = run.poll_generation
    now = timezone.now()
    if run.next_poll_at is not None and run.next_poll_at > now + timedelta(seconds=HOP_SLACK_S):
        # A long wait reached by hops: not due yet, so no API call, just the next hop.
        remaining = (run.next_poll_at - now).total_seconds()
        return Decision(run.pk, "hop", ticket=ticket, poll_in_s=remaining)
    metrics.observe_poll_lateness(run.next_poll_at)
    if deadline.is_past(run, now):
        return expiry.expire(run, ticket=ticket)
    wait = budget.take("poll")
    if wait > 0:
        # Over the shared budget: the same tick again later, never dropped.
        return Decision(run.pk, "deferred", ticket=ticket, poll_in_s=wait)
    backend = get_backend(run.backend)
    try:
        state = backend.retrieve(run)
    except Exception as exc:  # noqa: BLE001 - every failure goes through the error policy
        metrics.count_api_call("retrieve")
        counters = Counters(api_calls=1, polls=1)
        return answers.decide_error(
            run, exc, ticket, counters, what="retrieve", source=EventSource.POLL
        )
    # state.api_calls: e.g. Assistants reads the answer's messages with the run.
    metrics.count_api_call("retrieve", state.api_calls)
    counters = Counters(api_calls=state.api_calls, polls=1)
    if state.status == RunStatus.REQUIRES_ACTION:
        return tool_round.on_answer(run, state, ticket, counters)
    return answers.decide_answer(
        run, state, ticket, counters, source=EventSource.POLL, attempt=run.poll_attempt + 1
    )
