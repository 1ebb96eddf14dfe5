"""Applying recorded OpenAI webhook events: wake the run, idempotently, with no API call.

An event carries only the object id, so applying it means *waking* the run: a fresh poll ticket
and an immediate poll, which retrieves once; the poll already waiting finds its ticket gone and
exits without calling the API. That is what makes a run tracked by webhook cost one retrieve.

A delivery costs one statement and one enqueue on PostgreSQL: ``record`` stores it with one
insert-or-ignore that also finds its run, settles its outcome and takes the run's fresh ticket
(``event_rows``), and ``process`` enqueues the poll. On SQLite, and for a batch, the ticket is a
second UPDATE in the insert's transaction.
Every step that could run twice (OpenAI delivers at least once, two copies may arrive together,
the run's remote id may land while we look) is either that insert, which only one copy wins, or
a conditional UPDATE on the event's ``outcome``, so exactly one writer acts on each event.
Verifying and parsing a delivery is the intake's job (``runs.intake``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import nullcontext
from datetime import datetime
from typing import Any, NamedTuple

from django.db import transaction
from django.utils import timezone

from .. import rawsql
from ..models import Batch, Run, WebhookEvent
from ..redact import redact
from ..status import TERMINAL
from . import batch_writer, event_rows, writer

log = logging.getLogger(__name__)

Outcome = WebhookEvent.Outcome

#: The events that tell us a response reached a terminal status.
RESPONSE_TERMINAL_EVENTS = frozenset(
    {"response.completed", "response.failed", "response.cancelled", "response.incomplete"}
)
#: The events that tell us a batch ended: they wake the batch (``WebhookEvent.batch``), whose
#: poll then costs one retrieve and the downloads.
BATCH_EVENTS = frozenset({"batch.completed", "batch.failed", "batch.expired", "batch.cancelled"})
#: The events we act on: each names its object (``data.id``).
ACTED_ON = RESPONSE_TERMINAL_EVENTS | BATCH_EVENTS


class Recorded(NamedTuple):
    """A stored delivery: the event, whether this copy stored it, and the run's fresh ticket when
    the insert took it (``event_rows``: PostgreSQL, an event settled ``applied``)."""

    event: WebhookEvent
    created: bool
    ticket: int | None = None


def record(
    webhook_id: str,
    *,
    event_id: str,
    event_type: str,
    object_id: str,
    payload: dict[str, Any],
    created_at: datetime | None,
) -> Recorded:
    """Store a delivery once by its ``webhook-id``, settled in the same statement.

    One ``INSERT ... ON CONFLICT (webhook_id) DO NOTHING RETURNING`` (``event_rows``): its
    subqueries find the run with this remote id and settle the event as it goes in: ``applied``
    (an active run, which ``process`` then wakes), ``stale`` (the run has ended),
    ``unknown_object`` (no run has this id yet) or ``ignored`` (an event type we do not act on).
    On PostgreSQL an ``applied`` event's run has its ticket taken in the same statement; a run
    that ended between the lookup and that UPDATE takes none, and the event is settled ``stale``.
    A copy arriving at the same moment conflicts and inserts nothing, so it can never wake the run
    a second time; it reads the winner's row instead (the one extra query of a duplicate).
    """
    about_batch = event_type in BATCH_EVENTS
    acts = about_batch or event_type in RESPONSE_TERMINAL_EVENTS
    now = timezone.now()
    event = WebhookEvent(
        webhook_id=webhook_id,
        event_id=event_id[:128],
        type=event_type[:64],
        object_id=object_id[:128],
        payload=payload,
        created_at_remote=created_at,
        received_at=now,
        processed_at=now,
    )
    about = Batch if about_batch else Run
    in_insert = event_rows.wakes_in_insert(about)
    # Elsewhere the ticket is a second statement, in the insert's transaction: a process that
    # died between two commits left an ``applied`` event whose object was never woken, and its
    # redelivery answered "duplicate". Rolled back, the redelivery stores it afresh; committed,
    # the object's due time is now, and the sweep sends a poll that never left.
    with nullcontext() if in_insert else transaction.atomic():
        stored = event_rows.insert_settled(event, object_id[:128] if acts else "", about)
        if stored is None:
            return Recorded(WebhookEvent.objects.get(webhook_id=webhook_id), False)
        ticket = stored.ticket
        if stored.outcome == Outcome.APPLIED and not in_insert:
            ticket = (batch_writer if about_batch else writer).wake_ticket(stored.found, 1)
        event.pk, event.outcome = stored.pk, stored.outcome
        if about_batch:
            event.batch_id = stored.found
        else:
            event.run_id = stored.found
        if event.outcome == Outcome.APPLIED and ticket is None:  # it ended meanwhile
            _settle(event, Outcome.APPLIED, Outcome.STALE, event.run_id)
    return Recorded(event, True, ticket)


def process(event: WebhookEvent, *, ticket: int | None) -> str:
    """Act on a recorded event once; returns its outcome. Raises if the wake could not be sent
    (the event is then left ``received``, so OpenAI's retry processes it again).

    A fresh event comes settled by its insert (``record``): ``applied`` only needs the wake, and
    only its enqueue when the insert took the run's ``ticket`` too (``Recorded.ticket``: required,
    since a caller passing None for a ticket taken would wake the run a second time).
    ``received`` is an event whose wake failed before; it goes the long way, settling first.
    """
    if event.type in BATCH_EVENTS:
        return _process_batch(event, ticket)
    if event.outcome == Outcome.APPLIED and event.run_id is not None:
        return _wake(event, ticket)
    if event.outcome in (Outcome.IGNORED, Outcome.STALE):
        return event.outcome
    if event.type not in RESPONSE_TERMINAL_EVENTS:
        _settle(event, Outcome.RECEIVED, Outcome.IGNORED)
        return Outcome.IGNORED
    if event.outcome == Outcome.UNKNOWN_OBJECT:
        # Not ours, or ours before start_run saved the remote id: look once more, now that the
        # event is visible, so a remote id saved in between is not missed (start_run looks too).
        run = _run_for(event.object_id)
        if run is None:
            return Outcome.UNKNOWN_OBJECT
        return _apply(event, run, Outcome.UNKNOWN_OBJECT)
    run = _run_for(event.object_id)
    if run is None:
        _settle(event, Outcome.RECEIVED, Outcome.UNKNOWN_OBJECT)
        run = _run_for(event.object_id)
        if run is None:
            return Outcome.UNKNOWN_OBJECT
        return _apply(event, run, Outcome.UNKNOWN_OBJECT)
    return _apply(event, run, Outcome.RECEIVED)


def apply_waiting(run_id: int, remote_id: str) -> int:
    """Apply events that arrived before ``remote_id`` was saved on run ``run_id``.

    Every start by webhook asks, and almost every answer is "none": that answer is one probe
    written out (``rawsql.any_row``), not a query the ORM compiles for each start.

    Never raises: its callers (a start, a tool round's submit) saved the run and armed its poll
    first, and still have work to do after it (the other saves of a chunk, a cancel). A failure
    is logged; the run keeps its poll, and a wake that was not sent leaves it due now, for the
    sweep.
    """
    try:
        return _apply_waiting(run_id, remote_id)
    except Exception as exc:  # noqa: BLE001 - see above: the run is not left without a poll
        log.warning("run %s: early webhook not applied: %s", run_id, redact(repr(exc)))
        return 0


def _apply_waiting(run_id: int, remote_id: str) -> int:
    if not rawsql.any_row(
        WebhookEvent, {"object_id": remote_id, "outcome": Outcome.UNKNOWN_OBJECT}
    ):
        return 0
    applied = 0
    for event in WebhookEvent.objects.filter(object_id=remote_id, outcome=Outcome.UNKNOWN_OBJECT):
        run = Run.objects.only("pk", "status").get(pk=run_id)
        if _apply(event, run, Outcome.UNKNOWN_OBJECT) == Outcome.APPLIED:
            applied += 1
    return applied


def waiting_for(remote_ids: list[str]) -> list[str]:
    """Which of ``remote_ids`` have events that arrived before their run's remote id was saved
    (one query for a chunk of starts; usually none)."""
    if not remote_ids:
        return []
    waiting = WebhookEvent.objects.filter(object_id__in=remote_ids, outcome=Outcome.UNKNOWN_OBJECT)
    return list(waiting.values_list("object_id", flat=True).distinct())


def apply_waiting_batch(batch_id: int, remote_id: str) -> int:
    """Apply ``batch.*`` events that arrived before ``remote_id`` was saved on the batch."""
    waiting = WebhookEvent.objects.filter(object_id=remote_id, outcome=Outcome.UNKNOWN_OBJECT)
    return sum(_process_batch(event) == Outcome.APPLIED for event in waiting)


def _process_batch(event: WebhookEvent, ticket: int | None = None) -> str:
    """A ``batch.*`` event: wake its batch once (the insert settled it ``applied`` when the batch
    was known and open, and took its ``ticket``), or look again for a batch whose remote id was
    saved meanwhile."""
    if event.outcome in (Outcome.IGNORED, Outcome.STALE):
        return event.outcome
    expected = event.outcome
    if expected != Outcome.APPLIED or event.batch_id is None:
        batch = Batch.objects.filter(remote_id=event.object_id).exclude(remote_id="").first()
        if batch is None:
            _settle(event, Outcome.RECEIVED, Outcome.UNKNOWN_OBJECT)
            return Outcome.UNKNOWN_OBJECT
        outcome = Outcome.STALE if batch.is_terminal else Outcome.APPLIED
        with transaction.atomic():  # settled and ticket taken together, as by the insert
            if not WebhookEvent.objects.filter(pk=event.pk, outcome=expected).update(
                outcome=outcome, batch=batch, processed_at=timezone.now()
            ):
                return (
                    WebhookEvent.objects.filter(pk=event.pk).values_list("outcome", flat=True).get()
                )
            if outcome == Outcome.STALE:
                return outcome
            event.batch_id = batch.pk
            ticket = batch_writer.wake_ticket(batch.pk, 1)
    elif ticket is None:
        ticket = batch_writer.wake_ticket(event.batch_id, 1)
    if ticket is None:  # it ended since
        WebhookEvent.objects.filter(pk=event.pk).update(outcome=Outcome.STALE)
        return Outcome.STALE
    _send(event, lambda: batch_writer.send_wake(event.batch_id, ticket, 1))
    log.info("batch %s: woken by %s (%s)", event.batch_id, event.type, event.webhook_id)
    return Outcome.APPLIED


def _run_for(object_id: str) -> Run | None:
    if not object_id:
        return None
    return Run.objects.filter(remote_id=object_id).only("pk", "status").first()


def _settle(event: WebhookEvent, expected: str, outcome: str, run_id: int | None = None) -> bool:
    """Move the event's outcome from ``expected`` to ``outcome``; False if someone else did."""
    done = WebhookEvent.objects.filter(pk=event.pk, outcome=expected).update(
        outcome=outcome, run_id=run_id, processed_at=timezone.now()
    )
    if done:
        event.outcome = outcome
    return bool(done)


def _apply(event: WebhookEvent, run: Run, expected: str) -> str:
    if run.status in TERMINAL:
        _settle(event, expected, Outcome.STALE, run.pk)
        return Outcome.STALE
    with transaction.atomic():  # settled and ticket taken together, as by the insert
        if not _settle(event, expected, Outcome.APPLIED, run.pk):
            return WebhookEvent.objects.filter(pk=event.pk).values_list("outcome", flat=True).get()
        ticket = writer.wake_ticket(run.pk, 1)
        if ticket is None:  # the run ended since it was read: nothing to poll
            _settle(event, Outcome.APPLIED, Outcome.STALE, run.pk)
            return Outcome.STALE
    event.run_id = run.pk
    return _wake(event, ticket)


def _wake(event: WebhookEvent, ticket: int | None) -> str:
    """Wake the run an ``applied`` event was settled to by its insert: enqueue the poll of the
    ``ticket`` taken with it (``record``), or take one first where none was."""
    assert event.run_id is not None
    run_id = event.run_id
    if ticket is None:
        ticket = writer.wake_ticket(run_id, 1)
        if ticket is None:  # the run ended between the insert and the wake: nothing to poll
            _settle(event, Outcome.APPLIED, Outcome.STALE, run_id)
            return Outcome.STALE
    _send(event, lambda: writer.send_wake(run_id, ticket, webhook_events=1))
    log.info("run %s: woken by %s (%s)", run_id, event.type, event.webhook_id)
    return Outcome.APPLIED


def _send(event: WebhookEvent, send: Callable[[], object]) -> None:
    """Enqueue the wake's poll; if the broker is down, un-settle the event and raise, so the
    redelivery (OpenAI retries a non-2xx) processes it again: ``received`` whatever it was (a
    copy finds an ``unknown_object`` too, but a ``received`` one is also its next sweep's). The
    object keeps its due time of now: the sweep polls it anyway."""
    try:
        send()
    except Exception:
        WebhookEvent.objects.filter(pk=event.pk).update(outcome=Outcome.RECEIVED, processed_at=None)
        event.outcome = Outcome.RECEIVED
        raise
