"""The recovery sweep: what turns "a countdown lived only in a worker's memory" into seconds.

A countdown task lives in one worker's memory (and, unacknowledged, in the broker): a worker
killed with SIGKILL or a Redis flush loses it, and Redis would redeliver only after the visibility
timeout. Every few seconds Celery beat runs this sweep, which

* wakes every active run whose ``next_poll_at`` is overdue by more than a grace, with a fresh
  ticket, so a late original poll and the re-armed one never both call the API;
* restarts ``pending`` runs whose ``start_run`` message was lost;
* releases start claims older than ``RUNS_CLAIM_TIMEOUT_S`` (the worker died between claim and
  save) and starts those runs again;
* releases tool-round submit claims that no live submit can still hold (the worker died between
  the claim and saving the answer) and wakes those runs, whose next tick submits the round;
* re-sends the cancel of a run still ``cancelling`` after ``RUNS_CLAIM_TIMEOUT_S`` (its
  ``runs.cancel_run`` was never published, or was lost with its worker or a Redis flush), then
  about once per that timeout while the run stays ``cancelling``;
* expires pending runs past their deadline (active ones are expired by the poll it wakes, which
  also cancels them remotely);
* does the same for batches (``batch_writer.rescue``): wakes overdue batch polls, releases stale
  submit claims and resends lost submits. A batch's runs are the batch's: their start claim is
  its submit claim, so no start of theirs is released or resent here.

Each query walks an index (``next_poll_at``, ``status``, the tool-call claim) and handles at most
``batch`` rows per kind per sweep, so a backlog drains over a few sweeps.

A run overdue because its message waits behind a backlog looks, in the database, like one whose
message was lost; re-arming it adds a message to the very backlog that made it late, and at
10,000 runs that fed on itself (a wake re-armed every grace while it waited: 59,335 polls for
10,000 runs, docs/reliability.md). So the sweep asks the broker first (``enqueue.room``):
it wakes the runs of released tool rounds and overdue runs, or resends lost starts, at most
``batch`` less the messages already waiting in that queue, but always the
``enqueue.RESCUE_FLOOR`` most overdue, so a lost message is never held back for ever. Starts
are counted closer where their queue is their own: no more than the runs (and batches) waiting
to start less the messages waiting can be lost, so a start queue with a message for every one
of them gets only the floor.
Batches likewise (``batch_writer.rescue``).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from itertools import islice

from django.db.models import Max, Q, QuerySet
from django.utils import timezone

from ..conf import settings
from ..models import Batch, Run, RunEvent
from ..status import ACTIVE, RunStatus
from . import batch_writer, enqueue, expiry, tool_calls, writer
from .decisions import Task

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    rearmed: int = 0
    restarted: int = 0
    reclaimed: int = 0
    released_rounds: int = 0
    cancels: int = 0
    expired: int = 0
    batches: int = 0
    #: Steps (or single runs' expiries) that raised this pass (logged, with their traceback).
    failures: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def sweep(now: datetime | None = None, batch: int | None = None) -> SweepReport:
    """One pass; safe to run concurrently with itself and with the workers. Each step is on its
    own: one that raises (a broker refusing a publish, a row no step can read) is logged and
    counted, and the steps after it still run, so no failure stops every path of recovery."""
    now = now or timezone.now()
    batch = batch or settings.RUNS_SWEEP_BATCH
    grace = timedelta(seconds=settings.RUNS_SWEEP_GRACE_S)
    report = SweepReport()
    steps = (_wake_overdue, _resend_cancels, _expire_pending, _resend_starts, _release_starts)
    for step in steps:
        try:
            step(report, now, batch, grace)
        except Exception:  # noqa: BLE001 - the next step must run all the same
            log.exception("sweep: %s failed; the other steps go on", step.__name__.lstrip("_"))
            report.failures += 1
    try:
        report.batches = batch_writer.rescue(now, batch, grace)
    except Exception:  # noqa: BLE001 - as above
        log.exception("sweep: the batches' rescue failed")
        report.failures += 1
    if any(asdict(report).values()):
        log.info("sweep: %s", report)
    return report


def _wake_overdue(report: SweepReport, now: datetime, batch: int, grace: timedelta) -> None:
    released = tool_calls.release_abandoned_claims(now, batch)
    for run_id in released:
        log.warning("run %s: a tool round's submit claim was abandoned; released", run_id)
        report.released_rounds += 1

    overdue = list(
        Run.objects.filter(status__in=ACTIVE, next_poll_at__lt=now - grace)
        .exclude(remote_id="")
        .order_by("next_poll_at")
        .values_list("pk", flat=True)[:batch]
    )
    # A released round's run first: its tools are done and waiting to be sent. One held back by a
    # deep queue keeps the due time of its last re-arm, so it comes back here once overdue.
    first = set(released)
    wakes = released + [pk for pk in overdue if pk not in first]
    for run_id in enqueue.room(enqueue.POLL_RUN, "wake", batch, wakes):
        woken = writer.wake(run_id)
        if run_id not in first:
            report.rearmed += woken


def _resend_cancels(report: SweepReport, now: datetime, batch: int, grace: timedelta) -> None:
    for run_id in lost_cancels(now, batch):
        log.warning("run %s: still cancelling; the cancel is sent again", run_id)
        writer.enqueue_now(Task(enqueue.CANCEL_RUN, (run_id,)))
        report.cancels += 1


def _expire_pending(report: SweepReport, now: datetime, batch: int, grace: timedelta) -> None:
    # A batch's runs are its batch's: they end with it (its deadline counts from its create).
    late = Run.objects.filter(status=RunStatus.PENDING, deadline_at__lt=now, batch__isnull=True)
    for run in list(late.order_by("deadline_at", "pk")[:batch]):
        try:
            report.expired += writer.apply(expiry.expire(run))
        except Exception:  # noqa: BLE001 - one run that cannot be expired must not hold the rest
            log.exception("run %s: could not be expired", run.pk)
            report.failures += 1


def _resend_starts(report: SweepReport, now: datetime, batch: int, grace: timedelta) -> None:
    # A pending run's next_poll_at is its next start attempt (a retry or a budget deferral).
    unclaimed = Run.objects.filter(status=RunStatus.PENDING, start_claimed_at__isnull=True)
    lost_starts = unclaimed.filter(
        Q(next_poll_at__isnull=True, created_at__lt=now - grace) | Q(next_poll_at__lt=now - grace)
    )
    queued = list(lost_starts.order_by("pk").values_list("pk", flat=True)[:batch])
    expected = _starts_expected(unclaimed, now) if queued else None
    resent = enqueue.room(enqueue.START_RUN, "start", batch, queued, expected)
    if resent:
        # Due now: the next sweep sends another only once this one is a grace late too. Without
        # the stamp every sweep re-sent every start still queued behind a backlog (1,832 start
        # tasks for 1,000 runs in a bench with beat running), load that grew with the backlog.
        # The same conditions again: a run claimed or deferred meanwhile keeps its own stamp.
        lost_starts.filter(pk__in=resent).update(next_poll_at=now)
    for run_id in resent:
        writer.enqueue_now(Task(enqueue.START_RUN, (run_id,)))
        report.restarted += 1


def _release_starts(report: SweepReport, now: datetime, batch: int, grace: timedelta) -> None:
    claim_timeout = timedelta(seconds=settings.RUNS_CLAIM_TIMEOUT_S)
    stale = Run.objects.filter(
        status=RunStatus.PENDING, start_claimed_at__lt=now - claim_timeout, batch__isnull=True
    ).values_list("pk", "start_claimed_at")[:batch]
    for run_id, claimed_at in list(stale):
        if writer.release_start_claim(run_id, claimed_at):
            log.warning("run %s: start claim is stale; the create may be repeated", run_id)
            report.reclaimed += 1


def lost_cancels(now: datetime, batch: int) -> list[int]:
    """Runs ``cancelling`` for at least ``RUNS_CLAIM_TIMEOUT_S`` whose cancel is due again:
    those in the first two sweep intervals of each such period since they began cancelling, so
    each is sent again about once per period (twice when a sweep runs early), not at every
    sweep, and a sweep that runs late does not skip it; more than ``batch`` at once, in turns.
    Read from the transition log (the last move to ``cancelling``): no column of its own, and
    few runs are ever cancelling."""
    period = timedelta(seconds=settings.RUNS_CLAIM_TIMEOUT_S)
    window = 2 * timedelta(seconds=settings.RUNS_SWEEP_INTERVAL_S)
    since = (
        RunEvent.objects.filter(run__status=RunStatus.CANCELLING, to_status=RunStatus.CANCELLING)
        .values_list("run_id")
        .annotate(at=Max("at"))
        .filter(at__lte=now - period)
        .order_by("at")
    )
    due = [(run_id, at) for run_id, at in since.iterator() if (now - at) % period < window]
    if len(due) <= batch:
        return [run_id for run_id, _ in due]
    # More due than one sweep takes (a mass cancel): each period starts where the last stopped,
    # so every run gets its cancel again within a few periods, not only the oldest ``batch``.
    start = int((now - due[0][1]) // period) * batch % len(due)
    return [run_id for run_id, _ in islice(due[start:] + due[:start], batch)]


def _starts_expected(unclaimed: QuerySet[Run], now: datetime) -> int | None:
    """How many messages the start queue would hold had none been lost: one per run waiting to
    start and one per batch waiting to submit, neither deferred to later (a deferral holds a
    countdown instead). None where that queue is not the starts' own (``enqueue.own_queue``):
    other messages in it would read as starts.

    The count errs one way only: copies re-sent earlier, or the starts of runs cancelled while
    they waited, deepen the queue, so fewer are re-sent (never fewer than the floor), never more.
    """
    if not enqueue.own_queue("start"):
        return None
    due = Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now)
    unsent = Batch.objects.filter(
        remote_id="", status__in=batch_writer.UNSENT, submit_claimed_at__isnull=True
    )
    return unclaimed.filter(due).count() + unsent.filter(due).count()
