"""The two ticks every run goes through: ``start`` creates it at OpenAI exactly once, ``poll``
looks at it once per ticket. Each computes a decision and ends in ``answers.conclude``.

Nothing here sleeps: a wait is a decision's ``poll_in_s`` (or ``start_in_s``), which the writer
turns into a stored due time and a Celery countdown.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from .. import budget, deadline, metrics, rawsql
from ..backends.base import ADOPTED_AT, OutgoingMessage, carried
from ..backends.registry import get_backend
from ..conf import settings
from ..errors import extra_api_calls
from ..models import Message, Run, Thread
from ..poll_modes import hands_over, next_by_due
from ..status import EventSource, RunStatus
from . import answers, expiry, starts, tool_round, writer
from .decisions import Counters, Decision

log = logging.getLogger(__name__)

#: A poll that fires this much before its run's due time is a hop of a long wait, not a tick.
HOP_SLACK_S = 0.5


def start(run_id: int) -> dict[str, Any]:
    """Create the run at OpenAI exactly once, then arm its first poll. With ``RUNS_START_CHUNK``
    above 1, other runs waiting to start are created in the same task (``starts``)."""
    size = int(settings.RUNS_START_CHUNK)
    if size > 1:
        return starts.start_chunk(run_id, size)
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
        messages = unsent_messages(run.thread_id)
        calls += Counters(api_calls=1)
        state = backend.create(run, thread_remote_id, [m for _, m in messages])
    except Exception as exc:  # noqa: BLE001 - every failure goes through the error policy
        calls += Counters(api_calls=extra_api_calls(exc))
        metrics.count_api_call("create", calls.api_calls)
        return {"run_id": run_id, **starts.failed(run, exc, calls)}
    calls += Counters(api_calls=state.api_calls - 1)  # e.g. a take-over's read of its run
    metrics.count_api_call("create", calls.api_calls)
    sent = [pk for pk, _ in messages]
    if ADOPTED_AT in state.extra:  # a run taken over from a lost create: only what it carried
        stamps = Message.objects.filter(pk__in=sent).values_list("pk", "created_at")
        sent = [pk for pk, created_at in stamps if carried(created_at, state)]
    Message.objects.mark_sent(sent)
    return {"run_id": run_id, **starts.finish_one(run, state, calls)}


def unsent_messages(thread_id: int) -> list[tuple[int, OutgoingMessage]]:
    """The thread's messages no run has carried to OpenAI yet, oldest first, with their ids: the
    rows of ``Message.objects.unsent_of([thread_id])``, read with a statement written out
    (``rawsql.column_rows``), since every start makes it."""
    rows = rawsql.column_rows(
        Message, ("pk", "role", "content"), {"thread_id": thread_id}, null=("sent_at",)
    )
    return [(pk, OutgoingMessage(role, content)) for pk, role, content in rows]


def poll(run_id: int, ticket: int) -> str:
    """One poll tick: at most one retrieve, then re-arm or stop. Returns what happened."""
    run = writer.claim_poll(run_id, ticket)
    if run is None:
        return "skipped"
    return answers.conclude(run, decide_poll(run))


def decide_poll(run: Run) -> Decision:
    """The decision of one tick for a run whose ticket was just claimed (as read by the claim),
    with who finds its next poll: a countdown, or the batches (``poll_modes.next_by_due``).

    How late the tick ran is judged at the claim, before the API call: a slow retrieve says
    nothing about whether the workers are behind.
    """
    now = timezone.now()
    decision = _decide(run, now)
    if decision.poll_in_s is None:
        return decision
    by_due = next_by_due(run, now)
    return replace(decision, by_due=by_due, hands_over=hands_over(run, by_due))


def _decide(run: Run, now: datetime) -> Decision:
    ticket = run.poll_generation
    if run.next_poll_at is not None and run.next_poll_at > now + timedelta(seconds=HOP_SLACK_S):
        # A long wait reached by hops: not due yet, so no API call, just the next hop.
        remaining = (run.next_poll_at - now).total_seconds()
        return Decision(run.pk, "hop", ticket=ticket, poll_in_s=remaining)
    metrics.observe_poll_lateness(run.next_poll_at)
    if deadline.is_past(run, now):
        return expiry.expire(run, ticket=ticket)
    wait = budget.take("poll")
    if wait > 0:
        # Over the shared budget: the same tick again later, never dropped, and never past the
        # deadline (a queue of deferred polls may be minutes long), which that tick acts on.
        return Decision(run.pk, "deferred", ticket=ticket, poll_in_s=deadline.cap_delay(run, wait))
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
        writer.end_error_streak(run, ticket)
        return tool_round.on_answer(run, state, ticket, counters)
    return answers.decide_answer(
        run, state, ticket, counters, source=EventSource.POLL, attempt=run.poll_attempt + 1
    )
