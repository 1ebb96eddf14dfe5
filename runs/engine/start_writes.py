"""What a start writes once its create answered: one run's (``started``), or a chunk's at once
(``started_many``, ``starts``). The writer's other half, kept apart for its size: the same
rules hold (status changes through the state machine, the counters with the change, the first
poll enqueued only once the change is saved).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from ..conf import settings
from ..models import Run
from ..states import transition_many
from ..status import ACTIVE, EventSource, RunStatus
from . import enqueue
from .decisions import Counters, Move, Task
from .writer import counter_values, enqueue_all, enqueue_now, move

log = logging.getLogger(__name__)


def started(
    run_id: int,
    change: Move,
    ticket: int,
    first_poll_in_s: float,
    counters: Counters,
    by_due: bool,
) -> bool:
    """A create answered: save the remote id, its first due time and the counters *with* the first
    status change (one UPDATE), then enqueue the first poll, unless it is left to ``runs.poll_due``
    (``by_due``: ``poll_modes.first_by_due``). True when the change was made.

    No ticket compare-and-set is needed here: until this UPDATE commits the run has no remote id,
    so nothing else can take a ticket. A worker killed before the enqueue leaves an overdue run
    for the sweep, never an active run with no due time.
    """
    now = timezone.now()
    due = now + timedelta(seconds=first_poll_in_s)
    saved = {
        "remote_id": change.fields.get("remote_id", ""),
        "submitted_at": now,
        "error_retries": 0,
        **counter_values(counters),
    }
    if change.to_status in ACTIVE:
        saved.update(next_poll_at=due, poll_attempt=0, poll_by_due=by_due)
    fields = {**change.fields, **saved}
    changed, _ = move(run_id, replace(change, fields=fields))
    if not changed:
        # Ended while we created it (a user's cancel): keep what OpenAI made, to cancel it. Only
        # on a run with no remote id: another create's (a start whose claim had timed out) stays,
        # and only this create's calls are counted on it.
        kept = Run.objects.filter(pk=run_id, remote_id="").update(
            **{k: v for k, v in saved.items() if k != "next_poll_at"}
        )
        if not kept and (counts := counter_values(counters)):
            Run.objects.filter(pk=run_id).update(**counts)
    elif change.to_status in ACTIVE and not by_due:
        hop = min(first_poll_in_s, settings.RUNS_MAX_COUNTDOWN_S)
        enqueue_now(Task(enqueue.POLL_RUN, (run_id, ticket), countdown=hop))
    return changed


@dataclass(frozen=True)
class Started:
    """A create that answered "queued" or "in progress": what ``started_many`` saves for it."""

    run_id: int
    to_status: str
    remote_id: str
    #: The ticket the first poll holds (the run's ``poll_generation`` as claimed).
    ticket: int
    first_poll_in_s: float
    #: The first poll is left to ``runs.poll_due`` (``poll_modes.first_by_due``).
    by_due: bool
    counters: Counters
    #: A later deadline for a windowed run (``deadline.for_new_response``), else None.
    deadline_at: datetime | None
    detail: Mapping[str, Any]


#: What ``started_many`` writes besides the status and the state machine's stamps.
_STARTED_COLUMNS = (
    "remote_id", "submitted_at", "error_retries", "api_calls", "next_poll_at", "poll_attempt",
    "poll_by_due", "deadline_at",
)  # fmt: skip


def started_many(items: list[Started]) -> set[int]:
    """``started`` for a chunk of creates at once: one state-machine step for all of them (lock,
    one UPDATE, one INSERT of the events), then each one's first poll. The ids moved; a run not
    moved (no longer pending: a user cancelled it meanwhile) is the caller's to finish alone.

    The counters are added under the step's row lock, so no other writer's count is lost.
    """
    if not items:
        return set()
    now = timezone.now()
    by_id = {i.run_id: i for i in items}

    countdowns = set()

    def decide(run: Run) -> tuple[str, dict[str, Any]] | None:
        item = by_id[run.pk]
        if run.status != RunStatus.PENDING or item.to_status not in ACTIVE:
            return None
        if not item.by_due:
            countdowns.add(run.pk)
        return item.to_status, {
            "remote_id": item.remote_id,
            "submitted_at": now,
            "error_retries": 0,
            "api_calls": run.api_calls + item.counters.api_calls,
            "next_poll_at": now + timedelta(seconds=item.first_poll_in_s),
            "poll_attempt": 0,
            "poll_by_due": item.by_due,
            "deadline_at": item.deadline_at or run.deadline_at,
        }

    moved = transition_many(
        list(by_id),
        decide,
        source=EventSource.CREATE,
        detail=lambda pk: by_id[pk].detail,
        columns=_STARTED_COLUMNS,
        read=("pk", "status", "api_calls", "deadline_at"),
    )
    ids = {pk for pk, _, _ in moved}
    max_hop = settings.RUNS_MAX_COUNTDOWN_S
    polls = [
        Task(
            enqueue.POLL_RUN,
            (pk, by_id[pk].ticket),
            countdown=min(by_id[pk].first_poll_in_s, max_hop),
        )
        for pk in sorted(ids & countdowns)
    ]
    if polls:
        try:
            enqueue_all(polls)
        except Exception as exc:  # noqa: BLE001 - the moves are committed; the rest must be saved
            # A broker that failed the flush must not cost the chunk's other saves (their runs
            # would be created again once their claims time out). A run whose first poll was not
            # sent is overdue once its first poll's delay and RUNS_SWEEP_GRACE_S have passed, and
            # the sweep wakes it.
            log.warning("first polls of %d started runs not sent (the sweep will): %r",
                        len(polls), exc)  # fmt: skip
    return ids
