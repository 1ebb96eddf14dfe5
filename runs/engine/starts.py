"""Starting runs in chunks: one ``runs.start_run`` creates every run waiting to start, up to
``RUNS_START_CHUNK``, with the writes of each wave of creates done together.

Why: a start alone costs its own task, a claim, the thread's and the messages' statements, a
status change (four round trips) and a poll enqueue; at 1,000 runs enqueued at once that made
the workers' CPU, not OpenAI, the pace of starting (docs/bench/README.md, "Chunked starts").
Here the first ``start_run`` messages take the start claims of the waiting runs in chunks
(``claims.claim_starts``, one statement: a pending run without a claim is one whose message is
queued or lost, and the sweep resends a lost one anyway), and the later messages find nothing
left. A chunk works in waves of ``RUNS_START_CONCURRENCY`` runs (a thread's runs in order, a
few to a wave so that no wave outlasts its claims: ``start_waves``); before each wave the claims
of every run still planned are renewed (``claims.renew_starts``: a run cancelled or released
meanwhile is skipped), and each wave is saved before the next:

1. the conversations its runs lack are created on as many threads and kept in two statements
   (the first saved wins, as for one run); its threads' unsent messages are read in one query;
2. the runs are created on the same threads, a thread's runs one after another, the first
   carrying the thread's unsent messages;
3. every run that answered "queued" or "in progress" moves in one state-machine step
   (``start_writes.started_many``) and gets its first poll; any other answer, an error, or a
   run cancelled meanwhile goes the one-run way (``finish_one``, ``failed``).

Only the holder of a start claim creates, and a worker killed mid-chunk leaves claims the sweep
releases after ``RUNS_CLAIM_TIMEOUT_S``; a create whose answer was not saved is then made again.
Each create waits at most for its wave (a round trip, one write) before it is saved, and a kill
may repeat the creates then in flight: up to ``RUNS_START_CONCURRENCY`` per task, against one
(docs/architecture.md, "Chunked starts").
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from .. import budget, deadline, metrics, poll_modes
from ..backends.base import OutgoingMessage, RemoteState, carried
from ..backends.registry import get_backend
from ..conf import settings
from ..errors import extra_api_calls
from ..models import Message, Run, Thread
from ..redact import redact
from ..schedule import next_delay, schedule_for
from ..status import ACTIVE, TERMINAL, EventSource, RunStatus, Strategy
from . import answers, events, start_writes, writer
from .decisions import Counters, Decision
from .start_threads import on_threads
from .start_waves import by_thread, per_thread, waves

log = logging.getLogger(__name__)


@dataclass
class Created:
    """One run's create: the answer or the error, the calls it took, the messages it carried."""

    run: Run
    state: RemoteState | None = None
    error: BaseException | None = None
    calls: Counters = field(default_factory=Counters)
    messages: list[int] = field(default_factory=list)


def start_chunk(run_id: int, size: int) -> dict[str, Any]:
    """Start run ``run_id`` and up to ``size - 1`` others waiting to start; the own run's result
    as ``lifecycle.start`` reports it, with how many runs the chunk started."""
    runs = writer.claim_starts(run_id, size)
    if not runs:
        return {"run_id": run_id, "started": False, "reason": "already claimed or not pending"}
    own = next((r for r in runs if r.pk == run_id), None)
    outcome, ready, handed_back = _within_budget(runs, run_id)
    held = runs[0].start_claimed_at
    assert held is not None
    writer.hand_back_starts(handed_back, held)  # at once: their own messages may be queued yet
    todo = waves(ready, int(settings.RUNS_START_CONCURRENCY), per_thread())
    conversations: dict[int, str | BaseException] = {}  # made by this chunk, by thread
    first = True
    try:
        while todo:
            if not first:
                # Renew every claim still planned, not only the next wave's: a thread's later
                # runs wait through every wave before theirs (``start_waves``). A run cancelled,
                # expired or released meanwhile is skipped.
                still, held = writer.renew_starts([r.pk for w in todo for r in w], held)
                todo = [kept for w in todo if (kept := [r for r in w if r.pk in still])]
                if not todo:
                    break
            first = False
            outcome.update(finish_all(create_all(todo.pop(0), conversations)))
    finally:
        # A write that failed leaves the waves after it uncreated: hand them back at once.
        writer.hand_back_starts([r.pk for w in todo for r in w], held)
    # A chunk that took others says how many it started; a start of one reads as it always did.
    taken = {"chunk_started": sum(1 for o in outcome.values() if o.get("started"))}
    if own is None:
        return {"run_id": run_id, "started": False, "reason": "already claimed or not pending",
                **taken}  # fmt: skip
    mine = outcome.get(run_id, {"started": False, "reason": "cancelled or ended meanwhile"})
    return {"run_id": run_id, **mine, **(taken if len(runs) > 1 else {})}


def _within_budget(
    runs: list[Run], run_id: int
) -> tuple[dict[int, dict[str, Any]], list[Run], list[int]]:
    """(results so far, runs to create now, ids to hand back). The own run is deferred by the
    budget as alone; another only tries the budget (no slot queued) and is handed back instead
    (its own message may still be queued: a deferral would send a second), as is every other run
    after it. A batch's run is its batch's to send."""
    outcome: dict[int, dict[str, Any]] = {}
    ready: list[Run] = []
    back: list[int] = []
    for run in runs:
        if run.batch_id is not None:
            outcome[run.pk] = {"started": False, "reason": f"belongs to batch {run.batch_id}"}
        elif back and run.pk != run_id:
            back.append(run.pk)
        elif (wait := budget.take("create", queue=run.pk == run_id)) <= 0:
            ready.append(run)
        elif run.pk == run_id:
            writer.apply(Decision(run.pk, "deferred", start_in_s=wait))
            outcome[run.pk] = {"started": False, "deferred_s": wait}
        else:
            back.append(run.pk)
    return outcome, ready, back


# --- the creates --------------------------------------------------------------------------------


def create_all(runs: Sequence[Run], conversations: dict[int, str | BaseException]) -> list[Created]:
    """Create ``runs`` remotely (conversations first where needed), one thread's runs in order.

    ``conversations``: what the chunk's earlier waves made for a thread (its conversation's id,
    or the error that failed it), kept up to date here. A thread's runs in a later wave
    (``start_waves``) use that conversation, or fail with that error as its first runs did,
    instead of creating another."""
    created = {run.pk: Created(run) for run in runs}
    for run in runs:
        made = conversations.get(run.thread_id)
        if isinstance(made, BaseException):
            created[run.pk].error = made
        elif made and not run.thread_remote_id:
            run.thread_remote_id = made
    groups = [g for g in by_thread(runs) if created[g[0].pk].error is None]
    _create_threads([g for g in groups if not g[0].thread_remote_id], created, conversations)
    groups = [g for g in groups if g[0].thread_remote_id]
    unsent: dict[int, list[Message]] = defaultdict(list)
    for message in Message.objects.unsent_of([g[0].thread_id for g in groups]):
        unsent[message.thread_id].append(message)

    def create_group(group: list[Run]) -> None:
        waiting = unsent.get(group[0].thread_id, [])
        for run in group:
            done = created[run.pk]
            try:
                done.state = get_backend(run.backend).create(
                    run, run.thread_remote_id, [OutgoingMessage(m.role, m.content) for m in waiting]
                )
            except Exception as exc:  # noqa: BLE001 - every failure goes through the error policy
                done.calls += Counters(api_calls=1 + extra_api_calls(exc))
                done.error = exc
                continue
            done.calls += Counters(api_calls=done.state.api_calls)  # a take-over's read included
            done.messages = [m.pk for m in waiting if carried(m.created_at, done.state)]
            waiting = [m for m in waiting if m.pk not in done.messages]  # the next run's

    on_threads(create_group, groups)
    return [created[run.pk] for run in runs]


def _create_threads(
    groups: list[list[Run]], created: dict[int, Created], known: dict[int, str | BaseException]
) -> None:
    """Create the conversations of ``groups`` (one per thread) and keep them, the first saved
    winning (``keep_remote_ids``), in ``known`` too; a failed one fails its thread's runs (each
    retries alone)."""
    if not groups:
        return

    def create_thread(group: list[Run]) -> str | BaseException:
        created[group[0].pk].calls += Counters(api_calls=1)
        try:
            return get_backend(group[0].backend).create_thread(group[0])
        except Exception as exc:  # noqa: BLE001 - the runs' error policy decides
            return exc

    replies = on_threads(create_thread, groups)
    made = dict(zip([g[0].thread_id for g in groups], replies, strict=True))
    kept = Thread.objects.keep_remote_ids(
        {tid: rid for tid, rid in made.items() if isinstance(rid, str)}
    )
    for group in groups:
        tid = group[0].thread_id
        answer = made[tid] if isinstance(made[tid], BaseException) else kept[tid]
        known[tid] = answer
        for run in group:
            if isinstance(answer, BaseException):
                created[run.pk].error = answer
            else:
                run.thread_remote_id = answer


# --- the writes ---------------------------------------------------------------------------------


def finish_all(created: list[Created]) -> dict[int, dict[str, Any]]:
    """Write the chunk: the common answer ("queued", "in progress") for every run at once, any
    other answer or error one run at a time. Each run's result, by id."""
    calls = sum(c.calls.api_calls for c in created)
    if calls:
        metrics.count_api_call("create", calls)
    Message.objects.mark_sent([pk for c in created if c.state for pk in c.messages])
    common = {c.run.pk: c for c in created if c.state and _is_common(c.run, c.state)}
    items = {pk: _started(c) for pk, c in common.items()}
    moved = start_writes.started_many(list(items.values()))
    for pk in moved:
        _count_handed_over(common[pk].run, items[pk].by_due)
    _apply_waiting_events([common[pk] for pk in moved])
    results: dict[int, dict[str, Any]] = {}
    for c in created:
        if c.run.pk in moved and c.state is not None:
            results[c.run.pk] = _result(c.run, c.state)
            continue
        try:
            if c.state is None:
                results[c.run.pk] = failed(c.run, c.error or RuntimeError("no answer"), c.calls)
            else:
                results[c.run.pk] = finish_one(c.run, c.state, c.calls)
        except Exception as exc:  # noqa: BLE001 - one run's failed write is not the chunk's
            # Its claim stays; the sweep releases it after RUNS_CLAIM_TIMEOUT_S, as alone.
            log.error("run %s: saving its start failed: %s", c.run.pk, redact(repr(exc)))
            results[c.run.pk] = {"started": False, "error": "start_not_saved"}
    return results


def _is_common(run: Run, state: RemoteState) -> bool:
    """An answer the bulk write covers: on to the first poll, nothing else to save."""
    return state.status in (RunStatus.QUEUED, RunStatus.IN_PROGRESS) and bool(state.remote_id)


def _started(c: Created) -> start_writes.Started:
    run, state = c.run, c.state
    assert state is not None
    later, delay = _first_poll(run)
    return start_writes.Started(
        run_id=run.pk,
        to_status=state.status,
        remote_id=state.remote_id,
        ticket=run.poll_generation,
        first_poll_in_s=delay,
        by_due=poll_modes.first_by_due(run),
        counters=c.calls,
        deadline_at=later,
        detail={"remote_status": state.remote_status, "remote_id": state.remote_id},
    )


def _first_poll(run: Run) -> tuple[datetime | None, float]:
    """(a later deadline set on ``run`` if its window, counted from now, needs one; the delay)."""
    later = deadline.for_new_response(run)
    if later is not None:
        run.deadline_at = later
    schedule = schedule_for(run.strategy, run.completion_window)
    return later, next_delay(schedule, 0, remaining_s=deadline.remaining_s(run))


def _count_handed_over(run: Run, by_due: bool) -> None:
    """Count a started run whose first poll "auto" left to the batches (``poll_modes.hands_over``:
    not one of a batched strategy, whose polls were never the countdowns')."""
    if poll_modes.hands_over(run, by_due):
        metrics.count_handed_to_batches("start")


def _apply_waiting_events(created: list[Created]) -> None:
    """Apply webhooks that beat a create here (before its remote id was saved): one query."""
    by_remote = {c.state.remote_id: c.run.pk for c in created
                 if c.state and c.run.strategy == Strategy.WEBHOOK}  # fmt: skip
    for remote_id in events.waiting_for(list(by_remote)):
        events.apply_waiting(by_remote[remote_id], remote_id)  # never raises: not the others'


def _result(run: Run, state: RemoteState) -> dict[str, Any]:
    return {"started": True, "remote_id": state.remote_id, "status": state.status}


def finish_one(run: Run, state: RemoteState, calls: Counters) -> dict[str, Any]:
    """Save one run's create (its status, remote id and first poll) and act on what it answered:
    an end is saved with its output; a run cancelled meanwhile is cancelled remotely too."""
    later, delay = _first_poll(run)
    # Only from pending: a run ended, or created by another start, meanwhile is not ours to move.
    move = replace(answers.move_to(run, state, EventSource.CREATE), strict=True)
    if later is not None:
        move = replace(move, fields={**move.fields, "deadline_at": later})
    by_due = poll_modes.first_by_due(run)
    changed = start_writes.started(run.pk, move, run.poll_generation, delay, calls, by_due)
    if changed and state.status in ACTIVE:
        _count_handed_over(run, by_due)
    if not changed and state.status not in TERMINAL:
        status, remote_id = Run.objects.filter(pk=run.pk).values_list("status", "remote_id").get()
        if status in (RunStatus.CANCELLED, RunStatus.EXPIRED) or remote_id != state.remote_id:
            # Cancelled by a user (or expired by the sweep) while we were creating it, or
            # created by another start meanwhile: do not leave this one running remotely.
            run.remote_id = state.remote_id
            answers.cancel_remote_quietly(run)
    elif state.status in ACTIVE and run.strategy == Strategy.WEBHOOK:
        # A webhook may have beaten us here (it arrived before the remote id was saved).
        events.apply_waiting(run.pk, state.remote_id)
    return _result(run, state)


def failed(run: Run, exc: BaseException, calls: Counters) -> dict[str, Any]:
    """A create (or its conversation's) that raised: the error policy retries or fails the run."""
    decision = answers.decide_error(run, exc, None, calls, what="create", source=EventSource.CREATE)
    answers.conclude(run, decision)
    if decision.start_in_s is not None:
        return {"started": False, "retry_in": decision.start_in_s}
    return {"started": False, "error": decision.move.fields["last_error_code"]}
