"""The one writer: the only code that writes a run's poll ticket, ``next_poll_at``, counters and
error count, that moves a status on the engine's behalf, and that enqueues the engine's tasks.

Everything else in the engine *decides* (``decisions.Decision``); this module applies. That makes
the invariants checkable in one place:

- **Tickets.** ``Run.poll_generation`` names the one poll allowed to run next. A poll claims its
  ticket with a compare-and-set that also advances it (``claim_poll``); re-arming is a
  compare-and-set on the ticket the tick holds (``apply``), and a wake takes a fresh one. A
  duplicated, redelivered or stale poll therefore exits without an API call, and a tick whose
  ticket was taken meanwhile arms nothing.
- **Waits of any length.** ``next_poll_at`` is the due time; the broker is handed at most
  ``RUNS_MAX_COUNTDOWN_S`` of it, and a poll that wakes early hops again without an API call.
  No countdown outlives Redis's visibility timeout or RabbitMQ's ``consumer_timeout``.
- **Counters are final when the end is visible.** A terminal move saves the tick's counters in
  the same UPDATE as the status (a batch's, in the same transaction: ``bulk_moves``).

What a start saves once its create answered lives beside this module, in ``start_writes`` (one
run, or a chunk of them at once), under the same rules; the hand-written hot statements (claims,
a tick's re-arm) in ``claims``; a webhook event's insert, which on PostgreSQL takes the wake's
ticket as it stores the event, in ``event_rows``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from .. import metrics
from ..conf import settings
from ..models import Run, ToolCall
from ..poll_modes import batch_takes, found_by_batch
from ..states import transition
from ..status import ACTIVE, TERMINAL, RunStatus
from . import bulk, bulk_moves, claims, enqueue
from .decisions import Counters, Decision, Errors, Move, Task

log = logging.getLogger(__name__)


# --- claims and tickets ---------------------------------------------------------------------------


def claim_start(run_id: int) -> Run | None:
    """Take the right to create run ``run_id`` remotely; the run as read by the claim (with
    ``thread_remote_id``), or None when someone has it already."""
    return claims.claim_start(run_id, timezone.now())


def claim_starts(run_id: int, size: int) -> list[Run]:
    """Take the start claims of run ``run_id`` and of up to ``size - 1`` other runs waiting to
    start (``starts``); the runs as read by the claim, none when all were taken already."""
    return claims.claim_starts(run_id, size, timezone.now())


def renew_starts(run_ids: list[int], held: datetime) -> tuple[set[int], datetime]:
    """Renew a chunk's claims on ``run_ids`` (held since ``held``) before its next wave; the ids
    still pending and still ours (``claims.renew_starts``), and the moment they are held from."""
    now = timezone.now()
    return claims.renew_starts(run_ids, held, now), now


def hand_back_starts(run_ids: list[int], held: datetime) -> None:
    """Drop a chunk's claims on runs it will not create (their start was not attempted): the
    run's own ``start_run``, or the sweep after ``RUNS_SWEEP_GRACE_S``, starts it."""
    if run_ids:
        Run.objects.filter(pk__in=run_ids, start_claimed_at=held).update(start_claimed_at=None)


def release_start_claim(run_id: int, claimed_at: datetime) -> bool:
    """The sweep's release of a stale start claim; only the caller that clears it restarts."""
    released = Run.objects.filter(pk=run_id, start_claimed_at=claimed_at).update(
        start_claimed_at=None
    )
    if released:
        enqueue_now(Task(enqueue.START_RUN, (run_id,)))
    return bool(released)


def claim_poll(run_id: int, ticket: int) -> Run | None:
    """Take poll ticket ``ticket``; the run as read, or None when the ticket is not ours.

    A run a batch may take (``poll_modes.found_by_batch``) also has its due time leased
    (``claims.lease``), so ``runs.poll_due`` does not take it while this poll (a wake's) is in
    flight; the run comes back with the due time it had (a wake's "now"), which is what the
    tick's hop check and lateness metric read. Should a batch claim the run between the two
    statements, the lease finds the ticket moved and this poll exits without a call: the
    batch's retrieve is the one.
    """
    run = claims.claim_ticket(run_id, ticket)
    if run is None or not found_by_batch(run):
        return run
    until = timezone.now() + timedelta(seconds=float(settings.RUNS_POLL_LEASE_S))
    return run if claims.lease(run_id, ticket + 1, until) else None


def take_ticket(run_id: int, status: str) -> int | None:
    """A fresh ticket for a run in ``status`` (the poll already waiting then exits); no enqueue.
    One UPDATE that returns it (``bulk.take_ticket``)."""
    return bulk.take_ticket(run_id, status)


def wake(run_id: int, *, webhook_events: int = 0) -> bool:
    """Poll now: take a fresh ticket (so the poll already waiting exits) and enqueue it, on the
    wakes queue (``RUNS_QUEUES["wake"]``): someone is waiting for this one. False when the run
    is not active (or has no remote id yet): nothing to poll.

    The ticket is bumped and read back by one UPDATE written out (``bulk.bump_ticket``), whatever
    ticket the caller last saw: a compare-and-set on that ticket would bump it just the same, and
    every webhook delivery paid about 0.1 ms of CPU to build its queryset. ``webhook_events`` is
    counted in the same UPDATE, and taken back if the poll cannot be enqueued (the broker is
    down), so the caller may raise and let the event be redelivered.
    For a run a batch may take (``poll_modes.found_by_batch``) a batch may claim it (due now) before
    this poll does: the poll then exits without a call, and the batch's retrieve is the one the
    wake asked for.
    """
    fresh = wake_ticket(run_id, webhook_events)
    return fresh is not None and send_wake(run_id, fresh, webhook_events=webhook_events)


def wake_ticket(run_id: int, webhook_events: int = 0) -> int | None:
    """A wake's fresh ticket, its due time now (a poll never sent is then the sweep's to send)
    and the events counted, in one UPDATE; None when the run is not active or has no remote id.
    ``send_wake`` enqueues its poll."""
    return bulk.bump_ticket(run_id, timezone.now(), webhook_events)


def send_wake(run_id: int, ticket: int, *, webhook_events: int = 0) -> bool:
    """Enqueue a wake's poll of ``ticket``, taken already (``wake``, or a webhook event's insert:
    ``event_rows``). The ``webhook_events`` counted with the ticket are taken back when the poll
    cannot be enqueued, and the error raised."""
    try:
        enqueue_now(Task(enqueue.POLL_RUN, (run_id, ticket)), kind="wake")
    except Exception:
        if webhook_events:
            Run.objects.filter(pk=run_id, webhook_events__gte=webhook_events).update(
                webhook_events=F("webhook_events") - webhook_events
            )
        raise
    return True


# --- applying decisions ---------------------------------------------------------------------------


def move(run_id: int, change: Move) -> tuple[bool, str]:
    """Make one status change through the state machine; (changed, the status the run has now)."""
    changed = transition(
        run_id,
        change.to_status,
        source=change.source,
        detail=change.detail,
        fields=change.fields,
        expected=change.expected,
        strict=change.strict,
    )
    if changed:
        return True, change.to_status
    return False, Run.objects.filter(pk=run_id).values_list("status", flat=True).get()


def apply(decision: Decision) -> bool:
    """Apply one decision; True when its status change was made."""
    d = decision
    pending: dict[str, Any] = counter_values(d.counters)
    pending.update(_error_values(d.errors))
    if d.remote_id:
        pending["remote_id"] = d.remote_id
    changed = False
    with transaction.atomic() if d.submitted_calls else nullcontext():
        if d.submitted_calls:
            ToolCall.objects.filter(pk__in=d.submitted_calls).update(state=ToolCall.State.SUBMITTED)
        if d.move is not None:
            change = d.move
            if change.to_status in TERMINAL:
                # The counters and the end in one UPDATE: whoever sees the end sees final counters.
                change = replace(change, fields={**pending, **change.fields})
            changed, _ = move(d.run_id, change)
            if changed and change.to_status in TERMINAL:
                pending = {}
        if d.submitted_calls and not changed and "remote_id" in pending:
            # Not on a run that ended meanwhile: it keeps the response it had
            # (``answers.conclude`` cancels the new one).
            kept = Run.objects.filter(pk=d.run_id, status__in=ACTIVE)
            kept.update(remote_id=pending.pop("remote_id"))
    if d.start_in_s is not None:
        _start_again(d.run_id, d.start_in_s, pending)
        pending = {}
    elif (
        d.poll_in_s is not None
        and d.ticket is not None
        and _rearm(d, d.ticket, d.poll_in_s, pending)
    ):
        pending = {}
    if pending:
        Run.objects.filter(pk=d.run_id).update(**pending)
    for task in d.then:
        enqueue_now(task)
    return changed


def apply_all(decisions: Iterable[Decision]) -> list[bool]:
    """Apply the decisions of a batch of ticks (``runs.poll_due``'s, whose runs are all polled
    by due time); True where a status change was made.

    The common ticks (a re-arm, a status change with its fields, an end) are written together
    (``bulk_moves.write_together``: three statements per kind of status change, one UPDATE for
    every re-arm and count), each run still a compare-and-set on its ticket and every move
    still the state machine's; any other decision goes through ``apply``.
    """
    decisions = list(decisions)
    written = bulk_moves.write_together(decisions)
    return [written[id(d)] if id(d) in written else apply(d) for d in decisions]


def count(run_id: int, counters: Counters) -> None:
    """Count calls made outside a tick's decision (a best-effort remote cancel)."""
    if counters:
        Run.objects.filter(pk=run_id).update(**counter_values(counters))


def end_error_streak(run: Run, ticket: int) -> None:
    """A good read that starts a tool round ends a streak of errors there and then (other
    answers reset it with their decision): the submit that follows a long outage of reads gets
    its own tries, not what the reads left of them. Only while the tick's ticket is current."""
    if run.error_retries:
        Run.objects.filter(pk=run.pk, poll_generation=ticket, status__in=ACTIVE).update(
            error_retries=0
        )
        run.error_retries = 0


def enqueue_now(task: Task, *, kind: enqueue.Kind | None = None) -> None:
    """Send now, on the queue of ``kind`` (default: the task's usual one, ``enqueue.KIND_OF``)."""
    enqueue.send(task.name, *task.args, countdown=task.countdown, kind=kind)


def enqueue_all(tasks: list[Task]) -> None:
    """Send several now, each on its usual queue, in one round trip where the broker allows."""
    enqueue.send_all([(t.name, t.args, t.countdown) for t in tasks])


def enqueue_on_commit(task: Task) -> None:
    """Enqueue once the caller's transaction commits, so the worker sees what it wrote."""
    transaction.on_commit(lambda: enqueue_now(task))


# --- the writes behind them -----------------------------------------------------------------------


def _rearm(d: Decision, ticket: int, delay: float, pending: dict[str, Any]) -> bool:
    """Store the due time and enqueue the poll holding ``ticket`` (none for a run whose next poll
    is left to ``runs.poll_due``: ``Decision.by_due``, or the run's flag as it stands when the
    decision has none, or its strategy's "batched" mode); nothing if the ticket moved.

    With what is still ``pending`` of the decision (its counters, error count and remote id,
    unless its move saved them) in the same UPDATE. Hand-written (``claims.rearm``): this is
    every unchanged tick's one write, and the ORM's compile of it cost more CPU than the
    statement itself.
    """
    rearmed = claims.rearm(
        d.run_id,
        ticket,
        (d.decided_at or timezone.now()) + timedelta(seconds=delay),
        d.attempt,
        by_due=d.by_due,
        counters=d.counters if pending else Counters(),
        errors=d.errors if pending else "keep",
        remote_id=pending.get("remote_id"),
    )
    if rearmed is None:
        return False
    if d.hands_over:
        metrics.count_handed_to_batches("poll")
    # ``by_due`` None (a decision that says nothing about lateness) kept the run's flag: a run
    # handed over, or of a batched strategy, still gets no countdown.
    strategy, handed_over = rearmed
    if not batch_takes(strategy, handed_over):
        hop = min(delay, settings.RUNS_MAX_COUNTDOWN_S)
        enqueue_now(Task(enqueue.POLL_RUN, (d.run_id, ticket), countdown=hop))
    return True


def _start_again(run_id: int, delay: float, values: dict[str, Any]) -> None:
    """Release the start claim and try the start again later (a retry or a budget deferral).

    For a pending run ``next_poll_at`` means "next start attempt", so the sweep waits for it too.
    """
    Run.objects.filter(pk=run_id, status=RunStatus.PENDING).update(
        start_claimed_at=None, next_poll_at=timezone.now() + timedelta(seconds=delay), **values
    )
    countdown = min(delay, settings.RUNS_MAX_COUNTDOWN_S)
    enqueue_now(Task(enqueue.START_RUN, (run_id,), countdown=countdown))


def counter_values(counters: Counters) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in ("api_calls", "polls", "webhook_events"):
        n = getattr(counters, name)
        if n:
            values[name] = F(name) + n
    return values


def _error_values(errors: Errors) -> dict[str, Any]:
    if errors == "reset":
        return {"error_retries": 0}
    if errors == "count":
        return {"error_retries": F("error_retries") + 1}
    return {}
