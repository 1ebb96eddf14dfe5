"""Which poll finds a run next: a countdown task of its own, or ``runs.poll_due`` by its due time.

Per strategy, a setting chooses (``RUNS_POLL_MODE`` for runs tracked by polling,
``RUNS_SAFETY_NET_MODE`` for webhook runs' safety nets):

- ``"per_run"``: every re-arm enqueues a countdown task; a poll fires at its due time, with no
  beat tick in between, and nothing but a worker is needed.
- ``"batched"``: every re-arm stores the due time only; beat's ``runs.poll_due`` claims the due
  runs in batches. Less CPU per retrieve at every load measured, and the schedule kept once
  hundreds of runs are polled at once; a poll lands at the beat tick nearest its due time (up
  to half ``RUNS_POLL_DUE_INTERVAL_S`` before or after it).
- ``"auto"``: per run while its polls run on time; a poll (or the start) that ran more than
  ``RUNS_POLL_AUTO_LATE_S`` late (the workers are behind) hands its run to the batches for the
  rest of the run's life, recorded on the row (``Run.poll_by_due``). Nothing counts runs or
  reads load: a late poll is the measure of load that matters here, paid by the run that
  suffered it, and the batches keep the schedule where countdowns fall behind
  (docs/architecture.md, "When each wins").

Why a run handed to the batches stays there: a batch's polls are on time by construction, so
judged by lateness every batched run would return to countdowns at once, and the two would
alternate while the load lasted.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from .conf import settings
from .status import Strategy

if TYPE_CHECKING:
    from .models import Run

#: What ``RUNS_POLL_MODE`` and ``RUNS_SAFETY_NET_MODE`` may be.
MODES = ("per_run", "batched", "auto")


def mode(strategy: str) -> str:
    """The setting that decides for runs tracked by ``strategy``."""
    name = "RUNS_SAFETY_NET_MODE" if strategy == Strategy.WEBHOOK else "RUNS_POLL_MODE"
    return str(getattr(settings, name))


def by_due(strategy: str) -> bool:
    """Whether every run of ``strategy`` is polled by due time ("batched"): a re-arm stores the
    due time and enqueues nothing, and a batch takes the run by its strategy alone."""
    return mode(strategy) == "batched"


def needs_batches(value: str) -> bool:
    """Whether a mode leaves some runs to ``runs.poll_due`` ("batched" or "auto"), so that
    something must schedule it: the one answer ``due_strategies``, ``runs.beat`` and the system
    check W302 share."""
    return value in MODES and value != "per_run"


def due_strategies() -> list[str]:
    """The strategies some of whose runs ``runs.poll_due`` polls; none: nothing to batch, and
    ``runs.beat`` schedules no ``runs.poll_due``."""
    return [s for s in Strategy.values if needs_batches(mode(s))]


def batched_strategies() -> list[str]:
    """The strategies a batch takes every due run of (``by_due``)."""
    return [s for s in Strategy.values if by_due(s)]


def first_by_due(run: Run) -> bool:
    """For a start's first poll: whether it is left to the batches. In "auto", a start claimed
    more than ``RUNS_POLL_AUTO_LATE_S`` after it was due (its run's creation, or its retry's
    due time) waited behind a backlog of starts, and its first poll, due within a second, would
    fall in the same backlog. Judged at the claim (``start_claimed_at``): how long the create
    took says nothing about the workers."""
    chosen = mode(run.strategy)
    if chosen != "auto":
        return chosen == "batched"
    claimed = run.start_claimed_at
    return claimed is not None and _late(claimed, run.next_poll_at or run.created_at)


def next_by_due(run: Run, now: datetime) -> bool:
    """For a tick's re-arm: whether the next poll is left to the batches. ``run`` is as the tick
    claimed it, ``next_poll_at`` the due time that tick was for."""
    chosen = mode(run.strategy)
    if chosen != "auto":
        return chosen == "batched"
    return run.poll_by_due or _late(now, run.next_poll_at)


def found_by_batch(run: Run) -> bool:
    """Whether a batch may take this run when it is due (``batch_takes``)."""
    return batch_takes(run.strategy, run.poll_by_due)


def batch_takes(strategy: str, flagged: bool) -> bool:
    """Whether a batch may take a due run of ``strategy`` whose ``Run.poll_by_due`` is
    ``flagged``: its next poll was left to the batches, or its strategy's every run is (rows
    armed before ``Run.poll_by_due`` existed included). Such a run has no countdown task."""
    return flagged or by_due(strategy)


def hands_over(run: Run, to_batches: bool) -> bool:
    """Whether leaving ``run``'s next poll to the batches (``to_batches``, as ``first_by_due`` or
    ``next_by_due`` decided) hands it to them: it was not theirs already. What
    ``runs_handed_to_batches_total`` counts, once the write is made."""
    return to_batches and not found_by_batch(run)


def _late(now: datetime, due: datetime | None) -> bool:
    return due is not None and (now - due).total_seconds() > float(settings.RUNS_POLL_AUTO_LATE_S)
