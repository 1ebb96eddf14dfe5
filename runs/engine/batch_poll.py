"""Batched polling: one task takes every run whose poll is due and ticks them together.

A run polled by due time (``runs.poll_modes``: every run of a strategy whose mode is "batched",
``RUNS_SAFETY_NET_MODE``'s default for webhook runs' safety nets; in "auto", a run whose poll
ran late and was handed to the batches) has no countdown task of its own. A re-arm only stores
the due time, and ``runs.poll_due`` (from Celery beat, every ``RUNS_POLL_DUE_INTERVAL_S``)

1. claims up to ``RUNS_POLL_BATCH`` due runs of those strategies with one statement
   (``bulk.claim_due``: a fresh
   ticket each, and a lease on the due time, so no other claimer takes them meanwhile); "due"
   includes the next half interval, so a run is polled a little early rather than late;
2. if the batch came back full, sends another ``runs.poll_due`` at once, so a backlog fans out
   over the worker's slots instead of waiting for the next beat;
3. decides every run with the per-run tick's own code (``lifecycle.decide_poll``: hop, deadline,
   budget, retrieve, answer or error), on ``RUNS_POLL_CONCURRENCY`` threads, each retrieve still
   taking the shared budget; a run whose tick raises gets the error policy's decision alone
   (``decide_one``), the rest of the batch goes on;
4. writes the decisions back through ``writer.apply_all``: the status changes grouped per kind
   through the state machine's bulk path (terminal stays terminal), then every re-arm in one
   UPDATE, each a compare-and-set on the batch's ticket, the next due time counted from the
   run's own answer (``Decision.decided_at``).

A webhook wake still wakes its one run (``writer.wake``: a fresh ticket and a ``runs.poll_run``),
and the batch's write for that run then matches no ticket and changes nothing; that poll's claim
leases the due time as a batch's does (``writer.claim_poll``), so no batch takes the run while
its retrieve is in flight. A worker killed mid-batch leaves its runs due at the end of the lease,
when the next batch (or the sweep) takes them. docs/architecture.md says when each mode wins.
"""

from __future__ import annotations

import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from django.db import connections
from django.utils import timezone

from ..conf import settings
from ..models import Run
from ..poll_modes import batched_strategies, due_strategies
from ..redact import redact
from ..status import EventSource, Strategy
from . import answers, bulk, enqueue, lifecycle, writer
from .decisions import Counters, Decision

log = logging.getLogger(__name__)

#: The task's registered name (``runs.tasks.poll_due``).
POLL_DUE = "runs.poll_due"

#: The least a beat tick may wait in the queue before it is dropped: beat's and the workers'
#: clocks may differ by more than one short interval, and then every tick would arrive expired.
MIN_EXPIRES_S = 5.0


class TickError(Exception):
    """A run's tick raised inside a batch (our failure, not an answer of the API); its text is
    the original exception's, redacted, as the error policy logs and stores it."""


def poll_due(limit: int | None = None) -> dict[str, int]:
    """Tick every due run, up to ``limit`` (``RUNS_POLL_BATCH``); a count of the outcomes."""
    limit = int(limit or settings.RUNS_POLL_BATCH)
    if not due_strategies():
        return {"claimed": 0}  # every run has a countdown task of its own
    batched = batched_strategies()
    # Runs due before the next beat tick is half gone are taken now: polled a little early
    # rather than up to a whole interval late (still short of a hop: ``lifecycle.HOP_SLACK_S``).
    ahead = min(float(settings.RUNS_POLL_DUE_INTERVAL_S) / 2, lifecycle.HOP_SLACK_S)
    claimed = bulk.claim_due(
        limit,
        float(settings.RUNS_POLL_LEASE_S),
        ahead_s=ahead,
        # Every strategy batched: no filter, the statement as it was before modes per strategy.
        strategies=None if len(batched) == len(Strategy.values) else batched,
    )
    if len(claimed) >= limit:
        # More may be due: another slot takes the next batch while this one works.
        enqueue.send(POLL_DUE, kind="poll")
    if not claimed:
        return {"claimed": 0}
    runs = _read(claimed)
    decisions = decide_all(runs)
    conclude_all(runs, decisions)
    outcomes = Counter(d.outcome for d in decisions)
    return {"claimed": len(claimed), **outcomes}


def _read(claimed: list[bulk.Claimed]) -> list[Run]:
    """The claimed runs as the per-run tick reads them, with the due time the claim replaced."""
    rows = Run.objects.select_related("thread").in_bulk([c.run_id for c in claimed])
    runs = []
    for c in claimed:
        run = rows.get(c.run_id)
        if run is None:  # deleted since the claim
            continue
        run.next_poll_at = c.due_at
        run.poll_generation = c.ticket
        runs.append(run)
    return runs


def decide_all(runs: list[Run]) -> list[Decision]:
    """``lifecycle.decide_poll`` for each run, at most ``RUNS_POLL_CONCURRENCY`` at a time."""
    threads = max(1, min(int(settings.RUNS_POLL_CONCURRENCY), len(runs)))
    if threads == 1:
        return [decide_one(run) for run in runs]
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="poll-due") as pool:
        return list(pool.map(_decide_in_thread, runs))


def decide_one(run: Run) -> Decision:
    """``lifecycle.decide_poll``, or, if it raises, the error policy's decision for this run
    alone (``answers.decide_error``: poll again after its backoff, counting the error; fail the
    run past ``RUNS_MAX_ERROR_RETRIES``). One run that fails every time must not cost the batch
    its other runs' ticks, leave them leased or lose their counters."""
    try:
        decision = lifecycle.decide_poll(run)
    except Exception as exc:  # noqa: BLE001 - one run's failure stays that run's
        text = redact(f"{type(exc).__name__}: {exc}")
        log.error("run %s: its tick in a batch raised %s", run.pk, text)
        decision = answers.decide_error(
            run,
            TickError(text),
            run.poll_generation,
            Counters(),
            what="poll",
            source=EventSource.POLL,
        )
    # The next due time counts from this run's answer, not from the batch's write (``Decision``).
    return replace(decision, decided_at=timezone.now())


def _decide_in_thread(run: Run) -> Decision:
    """Most decisions need no database; a tool round's does, on this thread's own connection,
    which is closed here so no pool thread leaves one open."""
    try:
        return decide_one(run)
    finally:
        connections.close_all()


def conclude_all(runs: list[Run], decisions: list[Decision]) -> None:
    """Write the batch: ``writer.apply_all`` for every decision but those that end a run here and
    must cancel it remotely, or submitted a tool round, which go through ``answers.conclude``
    (the per-run tick's exit: a remote cancel, a new response's early webhook or its cancel)."""
    by_id = {run.pk: run for run in runs}
    alone = [d for d in decisions if d.cancel_remote or d.submitted_calls]
    writer.apply_all([d for d in decisions if not (d.cancel_remote or d.submitted_calls)])
    for d in alone:
        answers.conclude(by_id[d.run_id], d)


def beat_entry() -> dict[str, object]:
    """The beat schedule entry for batched polling (added by ``runs.beat`` when some runs are
    polled by due time).

    A tick left in the queue is dropped after two intervals, and never sooner than
    ``MIN_EXPIRES_S`` (``expires``): ticks must not pile up behind busy workers, and a few
    seconds of clock skew between beat and the workers must not expire every one of them.
    """
    interval = float(settings.RUNS_POLL_DUE_INTERVAL_S)
    options: dict[str, object] = {"expires": max(2 * interval, MIN_EXPIRES_S)}
    queue = enqueue.queue_for(POLL_DUE, "poll")
    if queue:
        options["queue"] = queue
    return {"task": POLL_DUE, "schedule": interval, "options": options}
