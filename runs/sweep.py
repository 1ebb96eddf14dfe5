"""The recovery sweep: what turns "a countdown lived only in a worker's memory" into seconds.

A countdown task lives in one worker's memory (and, unacknowledged, in Redis): a worker killed
with SIGKILL or a Redis flush loses it, and Redis would redeliver only after the visibility
timeout (an hour). Every few seconds Celery beat runs this sweep, which

* re-arms every active run whose ``next_poll_at`` is overdue by more than a grace, with a fresh
  ticket, so a late original poll and the re-armed one never both call the API;
* restarts ``pending`` runs whose ``start_run`` message was lost;
* releases start claims older than the task time limit (the worker died between claim and save)
  and starts those runs again;
* expires pending runs past their deadline (active ones are expired by the poll it wakes, which
  also cancels them remotely).

Each query walks an index (``next_poll_at``, ``status``) and handles at most ``batch`` rows per
kind per sweep, so a backlog drains over a few sweeps instead of one long transaction.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from . import tracking
from .models import Run
from .states import transition
from .status import ACTIVE, EventSource, RunStatus

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    rearmed: int = 0
    restarted: int = 0
    reclaimed: int = 0
    expired: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def sweep(now: datetime | None = None, batch: int | None = None) -> SweepReport:
    """One pass; safe to run concurrently with itself and with the workers."""
    from .tasks import start_run

    now = now or timezone.now()
    batch = batch or settings.RUNS_SWEEP_BATCH
    grace = timedelta(seconds=settings.RUNS_SWEEP_GRACE_S)
    report = SweepReport()

    overdue = list(
        Run.objects.filter(status__in=ACTIVE, next_poll_at__lt=now - grace)
        .exclude(remote_id="")
        .order_by("next_poll_at")
        .values_list("pk", flat=True)[:batch]
    )
    for run_id in overdue:
        report.rearmed += tracking.wake(run_id)

    expired_pending = list(
        Run.objects.filter(status=RunStatus.PENDING, deadline_at__lt=now).values_list(
            "pk", flat=True
        )[:batch]
    )
    for run_id in expired_pending:
        report.expired += transition(
            run_id,
            RunStatus.EXPIRED,
            source=EventSource.SWEEP,
            fields={
                "last_error_code": "deadline_exceeded",
                "last_error": "The run could not be started before its deadline.",
            },
        )

    # A pending run's next_poll_at is its next start attempt (a retry or a budget deferral).
    lost_starts = list(
        Run.objects.filter(status=RunStatus.PENDING, start_claimed_at__isnull=True)
        .filter(
            Q(next_poll_at__isnull=True, created_at__lt=now - grace)
            | Q(next_poll_at__lt=now - grace)
        )
        .values_list("pk", flat=True)[:batch]
    )
    for run_id in lost_starts:
        start_run.delay(run_id)
        report.restarted += 1

    claim_timeout = timedelta(seconds=settings.RUNS_CLAIM_TIMEOUT_S)
    stale = Run.objects.filter(
        status=RunStatus.PENDING, start_claimed_at__lt=now - claim_timeout
    ).values_list("pk", "start_claimed_at")[:batch]
    for run_id, claimed_at in list(stale):
        # Only the sweep that clears this exact claim restarts the run.
        if Run.objects.filter(pk=run_id, start_claimed_at=claimed_at).update(
            start_claimed_at=None
        ):
            log.warning("run %s: start claim is stale; the create may be repeated", run_id)
            start_run.delay(run_id)
            report.reclaimed += 1

    if any(asdict(report).values()):
        log.info("sweep: %s", report)
    return report
