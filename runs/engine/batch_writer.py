"""The writer of batches: the only code that writes a ``Batch`` row's claims, ticket, due time,
counters and status (its runs move in ``batch_runs``).

The rules are the run writer's (``writer.py``), applied to a batch:

- **One submit.** ``submit_claimed_at`` is taken by compare-and-set (``claim_submit``), renewed
  by the upload (``uploaded``), released by a retry or by the sweep once no call of its holder
  can still be under way (``submit_claim_s``, ``release_submit``). Should a holder outlive that
  all the same, the first remote id saved wins (``submitted``).
- **Tickets.** ``Batch.poll_generation`` names the one poll allowed next: a poll takes its
  ticket and leases the due time (``claim_poll``), a re-arm is a compare-and-set on the ticket
  it holds (``rearm``), a wake takes a fresh one (``wake``). No countdown handed to the broker
  is longer than ``RUNS_MAX_COUNTDOWN_S``: a longer wait is reached by hops.
- **Done once.** The end is one compare-and-set on ``results_applied_at`` (``finish``), made
  after every open run was settled: a batch marked done has no open run left, and no late tick
  reopens it (``rearm``). No poll's status overwrites ``cancelling`` either.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Case, F, Q, Sum, Value, When
from django.utils import timezone

from ..conf import settings
from ..models import Batch, Run
from ..status import BATCH_TERMINAL, BatchStatus
from . import enqueue, writer
from .decisions import Counters, Errors, Task

NONE = Counters()  # no calls counted (a default argument)
#: A batch that may still be (or become) submitted: no remote id yet.
UNSENT = (BatchStatus.PENDING, BatchStatus.CANCELLING)


# --- the batch row: claims, tickets, saves ------------------------------------------------------


def claim_submit(batch_id: int) -> Batch | None:
    """Take the right to upload and create batch ``batch_id``; the batch as read, or None."""
    now = timezone.now()
    taken = Batch.objects.filter(
        pk=batch_id, status__in=UNSENT, remote_id="", submit_claimed_at__isnull=True
    ).update(submit_claimed_at=now)
    return Batch.objects.get(pk=batch_id) if taken else None


def release_submit(
    batch_id: int,
    claimed_at: datetime | None,
    delay: float,
    counters: Counters = NONE,
    *,
    errors: Errors = "keep",
) -> bool:
    """Release a submit claim (ours after a failure or a budget wait, or a dead worker's) and
    submit again after ``delay`` s; only the caller whose compare-and-set cleared it enqueues."""
    released = Batch.objects.filter(pk=batch_id, remote_id="", submit_claimed_at=claimed_at).update(
        submit_claimed_at=None,
        next_poll_at=timezone.now() + timedelta(seconds=delay),
        **_counted(counters, errors),
    )
    if released:
        _enqueue(enqueue.SUBMIT_BATCH, (batch_id,), delay)
    return bool(released)


def submit_claim_s(uploaded: bool) -> float:
    """How old a submit claim must be before the sweep takes its holder for dead: its calls'
    longest (the upload; or the search for a lost create and a create) + RUNS_CLAIM_TIMEOUT_S."""
    if uploaded:
        calls = settings.RUNS_BATCH_FIND_PAGES * settings.OPENAI_TIMEOUT_S
        calls += settings.OPENAI_CREATE_TIMEOUT_S
    else:
        calls = settings.RUNS_BATCH_FILE_TIMEOUT_S
    return float(calls + settings.RUNS_CLAIM_TIMEOUT_S)


def uploaded(
    batch_id: int, claimed_at: datetime | None, input_file_id: str, counters: Counters
) -> datetime | None:
    """Save the input file's id and renew the submit claim if it is still ``claimed_at``; the new
    claim, or None when the sweep took it (the caller stops: an orphan file, not a 2nd batch)."""
    now = timezone.now()
    renewed = Batch.objects.filter(pk=batch_id, remote_id="", submit_claimed_at=claimed_at).update(
        input_file_id=input_file_id, submit_claimed_at=now, **_counted(counters, "keep")
    )
    if not renewed:
        save(batch_id, counters)
    return now if renewed else None


def submitted(
    batch_id: int, remote_id: str, status: str, delay: float, counters: Counters, deadline: datetime
) -> int | None:
    """The create answered: save the remote id, its status (unless a cancel came meanwhile), the
    first due time, the ``deadline`` (OpenAI's window starts now) and the counters in one UPDATE;
    enqueue the first poll, return its ticket. None (the counters saved) when another submit
    saved a remote id first or the batch ended here: on an empty remote id, not on the claim, as
    a submit that outlived its claim and its successor may both come back with a batch."""
    now = timezone.now()
    saved = (
        Batch.objects.filter(pk=batch_id, remote_id="")
        .exclude(status__in=BATCH_TERMINAL)
        .update(
            remote_id=remote_id,
            status=Case(When(status=BatchStatus.PENDING, then=Value(status)), default=F("status")),
            submitted_at=now,
            deadline_at=deadline,
            next_poll_at=now + timedelta(seconds=delay),
            poll_attempt=0,
            **_counted(counters, "reset"),
        )
    )
    if not saved:
        save(batch_id, counters)
        return None
    ticket = Batch.objects.filter(pk=batch_id).values_list("poll_generation", flat=True).get()
    _enqueue(enqueue.POLL_BATCH, (batch_id, ticket), delay)
    return ticket


def claim_poll(batch_id: int, ticket: int, lease_s: float) -> Batch | None:
    """Take poll ticket ``ticket`` and lease the due time ``lease_s`` ahead (the sweep leaves the
    tick alone meanwhile); the batch as read (with its due time), or None if not our ticket."""
    held = (
        Batch.objects.filter(pk=batch_id, poll_generation=ticket)
        .exclude(status__in=BATCH_TERMINAL)
        .exclude(remote_id="")
    )
    batch = held.first()
    lease = timezone.now() + timedelta(seconds=lease_s)
    if batch is None or not held.update(poll_generation=ticket + 1, next_poll_at=lease):
        return None
    batch.poll_generation = ticket + 1
    return batch


def rearm(
    batch_id: int,
    ticket: int,
    delay: float,
    *,
    attempt: int | None = None,
    counters: Counters = NONE,
    errors: Errors = "keep",
    status: str | None = None,
    fields: Mapping[str, Any] | None = None,
) -> bool:
    """Store the next due time (with the tick's counters, ``status`` and fields) and enqueue the
    poll that holds ``ticket``. ``status`` never replaces ``cancelling``: the cancel task sends a
    cancel asked for since the tick read the batch only while it is ``cancelling``. If a wake took
    the ticket, the fresher poll owns the row, which it may have ended: only counters are saved."""
    values = {**(fields or {}), **_counted(counters, errors)}
    if status is not None:
        keep = When(status=BatchStatus.CANCELLING, then=F("status"))
        values["status"] = Case(keep, default=Value(status))
    due: dict[str, Any] = {"next_poll_at": timezone.now() + timedelta(seconds=delay)}
    if attempt is not None:
        due["poll_attempt"] = attempt
    armed = (
        Batch.objects.filter(pk=batch_id, poll_generation=ticket)
        .exclude(status__in=BATCH_TERMINAL)
        .update(**values, **due)
    )
    if armed:
        _enqueue(enqueue.POLL_BATCH, (batch_id, ticket), delay)
    else:
        count(batch_id, counters)
    return bool(armed)


def count(batch_id: int, counters: Counters) -> None:
    """Count the calls of a tick that lost its ticket, on a batch still open: once it ended, its
    counters are final (``finish`` saved them with its end)."""
    if values := _counted(counters, "keep"):
        still_open = Batch.objects.exclude(status__in=BATCH_TERMINAL)
        still_open.filter(pk=batch_id, results_applied_at__isnull=True).update(**values)


def lease(batch_id: int, ticket: int, seconds: float) -> bool:
    """Push the due time of the poll holding ``ticket`` ``seconds`` ahead (its downloads, its
    settle), so that the sweep does not start the same work again; False if the ticket moved."""
    return bool(
        Batch.objects.filter(pk=batch_id, poll_generation=ticket)
        .exclude(status__in=BATCH_TERMINAL)
        .update(next_poll_at=timezone.now() + timedelta(seconds=seconds))
    )


def save(batch_id: int, counters: Counters = NONE, errors: Errors = "keep", **fields: Any) -> None:
    """Fields and counters of a step that arms nothing (an upload's file id, a cancel's calls)."""
    values = {**fields, **_counted(counters, errors)}
    if values:
        Batch.objects.filter(pk=batch_id).update(**values)


def wake(batch_id: int, *, webhook_events: int = 0) -> bool:
    """Poll now (a ``batch.*`` webhook, an operator, the sweep): ``wake_ticket``, so the poll
    already waiting exits without a call, then ``send_wake``; False for a batch ended or unsent."""
    ticket = wake_ticket(batch_id, webhook_events)
    return ticket is not None and send_wake(batch_id, ticket, webhook_events)


def wake_ticket(batch_id: int, webhook_events: int = 0) -> int | None:
    """A wake's fresh ticket, the due time now (an unsent poll is then the sweep's to send) and
    the event counted, in one UPDATE; None for a batch ended or not sent."""
    batch = Batch.objects.filter(pk=batch_id).exclude(status__in=BATCH_TERMINAL)
    fresh = {"poll_generation": F("poll_generation") + 1, "next_poll_at": timezone.now()}
    counted = F("webhook_events") + webhook_events
    if not batch.exclude(remote_id="").update(**fresh, webhook_events=counted):
        return None
    return Batch.objects.filter(pk=batch_id).values_list("poll_generation", flat=True).get()


def send_wake(batch_id: int, ticket: int, webhook_events: int = 0) -> bool:
    """Enqueue the poll of a wake's ``ticket``; if the broker refuses it, the events counted with
    it are taken back and the error raised."""
    try:
        writer.enqueue_now(Task(enqueue.POLL_BATCH, (batch_id, ticket)), kind="wake")
    except Exception:
        if webhook_events:
            counted = F("webhook_events") - webhook_events
            Batch.objects.filter(pk=batch_id).update(webhook_events=counted)
        raise
    return True


def ask_cancel(batch_id: int) -> str | None:
    """A cancel: ``cancelled``-to-be when nothing was sent, not even its upload (a create that
    timed out may have reached OpenAI; the claim taken here stops any submit; the caller
    settles it), ``cancelling`` when it is sent or runs (``runs.cancel_batch`` asks OpenAI, again
    if asked again: a message may be lost); None when it has ended."""
    batches, cancelling = Batch.objects.filter(pk=batch_id), BatchStatus.CANCELLING
    unsent = {"status": BatchStatus.PENDING, "remote_id": "", "input_file_id": ""}
    if batches.filter(**unsent, submit_claimed_at__isnull=True).update(
        status=cancelling, submit_claimed_at=timezone.now()
    ):
        return BatchStatus.CANCELLED
    active = batches.exclude(status__in=BATCH_TERMINAL)
    if active.filter(status=cancelling).exists() or active.update(status=cancelling):
        writer.enqueue_on_commit(Task(enqueue.CANCEL_BATCH, (batch_id,)))
        return BatchStatus.CANCELLING
    return None


def retry_cancel(batch_id: int, delay: float) -> None:
    """Send the cancel again after the error policy's countdown."""
    _enqueue(enqueue.CANCEL_BATCH, (batch_id,), delay)


def finish(batch_id: int, status: str, counters: Counters = NONE, **fields: Any) -> bool:
    """The batch's end, once: its status, cost (its runs' sum; None when none is known) and
    whatever else the end saves, in one compare-and-set on ``results_applied_at``."""
    now = timezone.now()
    cost = Run.objects.filter(batch_id=batch_id, cost__isnull=False).aggregate(c=Sum("cost"))["c"]
    return bool(
        Batch.objects.filter(pk=batch_id, results_applied_at__isnull=True).update(
            status=status,
            results_applied_at=now,
            completed_at=now,
            next_poll_at=None,
            cost=cost,
            **fields,
            **_counted(counters, "keep"),
        )
    )


def rescue(now: datetime, limit: int, grace: timedelta) -> int:
    """The sweep's part for batches: wake overdue polls, release submit claims whose holder
    died (``submit_claim_s``) and resend lost submits, as much as their queues have room for
    (``enqueue.room``). Returns how many batches it acted on."""
    acted = 0
    open_ = Batch.objects.exclude(status__in=BATCH_TERMINAL)
    overdue = open_.exclude(remote_id="").filter(next_poll_at__lt=now - grace)
    due = list(overdue.order_by("next_poll_at").values_list("pk", flat=True)[:limit])
    for batch_id in enqueue.room(enqueue.POLL_BATCH, "wake", limit, due):
        acted += wake(batch_id)
    unsent = open_.filter(remote_id="", status__in=UNSENT)
    uploading = now - timedelta(seconds=submit_claim_s(uploaded=False))
    creating = now - timedelta(seconds=submit_claim_s(uploaded=True))
    claimed = unsent.filter(
        Q(input_file_id="", submit_claimed_at__lt=uploading)
        | (~Q(input_file_id="") & Q(submit_claimed_at__lt=creating))
    )
    for batch_id, at in list(claimed.values_list("pk", "submit_claimed_at")[:limit]):
        acted += release_submit(batch_id, at, 0.0)
    lost = unsent.filter(submit_claimed_at__isnull=True).filter(
        Q(next_poll_at__isnull=True, created_at__lt=now - grace) | Q(next_poll_at__lt=now - grace)
    )
    queued = list(lost.order_by("pk").values_list("pk", flat=True)[:limit])
    resent = enqueue.room(enqueue.SUBMIT_BATCH, "start", limit, queued)
    if resent:  # due now, as a run's lost start is stamped: sent again only a grace later
        lost.filter(pk__in=resent).update(next_poll_at=now)
    for batch_id in resent:
        writer.enqueue_now(Task(enqueue.SUBMIT_BATCH, (batch_id,)))
    return acted + len(resent)


def _enqueue(name: str, args: tuple[int, ...], delay: float) -> None:
    """Enqueue ``name`` in ``delay`` s, at most ``RUNS_MAX_COUNTDOWN_S`` (then it hops)."""
    countdown = min(delay, settings.RUNS_MAX_COUNTDOWN_S) or None
    writer.enqueue_now(Task(name, args, countdown=countdown))


def _counted(counters: Counters, errors: Errors) -> dict[str, Any]:
    values: dict[str, Any] = {
        name: F(name) + getattr(counters, name)
        for name in ("api_calls", "polls", "webhook_events")
        if getattr(counters, name)
    }
    if errors == "reset":
        values["error_retries"] = 0
    elif errors == "count":
        values["error_retries"] = F("error_retries") + 1
    return values
