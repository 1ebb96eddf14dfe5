"""A batch of ticks written together: their status changes through the state machine's bulk path
(``states.transition_many``), then every re-arm and count in one statement (``bulk.rearm_all``),
all in one transaction.

Why: ``runs.poll_due`` ticks every run polled by due time on one worker process, and a batch of a
thousand runs starting and ending together holds dozens of status changes. One by one
(``writer.apply``) each was a read, an UPDATE, an event INSERT and a commit: most of a batch's
queries and a fifth of its CPU (docs/bench/README.md, "The batch's re-arm"). Grouped by target
status and by the fields they save, they cost three statements a group. The rules are the
single path's: the table decides each move from the status read under the row's lock, terminal
stays terminal, every move is recorded and signalled, and the counters of a run that ends are
saved in the same transaction as its end (whoever sees the end sees final counters).

A decision with more to it (a new remote id outside a move, tool calls to mark, tasks to send, a
start to retry, webhook events, no ticket, an end that counts an error, a move the state machine
must judge from the status the tick read) is not taken here; ``writer.apply`` writes it alone,
after this.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from ..models import Run
from ..states import transition_many
from ..status import TERMINAL, RunStatus
from .bulk import Rearm, rearm_all
from .decisions import Decision, Move


def together(d: Decision) -> bool:
    """Whether ``write_together`` can write this tick: a re-arm, with or without a status change,
    or an end; nothing else. A re-arm that gives its run a countdown task (``by_due`` False:
    the mode became "per_run" while the run was batched) is the single path's, which sends it.
    """
    polls_on = d.poll_in_s is not None and d.by_due is not False
    # An end's error count is its move's to write (the single path lets the move's fields win).
    ends = d.move is not None and d.move.to_status in TERMINAL and d.errors == "keep"
    return (
        d.ticket is not None
        and (polls_on or ends)
        and d.start_in_s is None
        and d.remote_id is None
        and not d.then
        and not d.submitted_calls
        and not d.cancel_remote
        and not d.counters.webhook_events
        and not (d.move is not None and (d.move.strict or _resumes(d.move)))
    )


def _resumes(move: Move) -> bool:
    """A run read as waiting for tool outputs that OpenAI says went on (a submit whose answer was
    lost): the state machine allows it for the writer that saw the wait, which ``transition``
    is told and ``transition_many`` is not."""
    return move.expected == RunStatus.REQUIRES_ACTION and move.to_status in (
        RunStatus.QUEUED,
        RunStatus.IN_PROGRESS,
    )


def write_together(decisions: list[Decision]) -> dict[int, bool]:
    """Write the ticks among ``decisions`` that ``together`` accepts, one per run; for each
    written, by ``id()``, whether its status change was made."""
    taken: dict[int, Decision] = {}
    for d in decisions:
        if together(d):
            taken.setdefault(d.run_id, d)
    if not taken:
        return {}
    now = timezone.now()
    moving = [d for d in taken.values() if d.move is not None]
    # A batch of plain re-arms is one statement: no transaction to open.
    with transaction.atomic() if moving else nullcontext():
        if moving:
            # Every row of the batch locked once, in id order, before any write: the groups'
            # moves and the re-arm then take no lock in another order, so two writers sharing
            # runs (a batch whose lease ran out, and the next) wait rather than deadlock.
            list(
                Run.objects.select_for_update()
                .filter(pk__in=list(taken))
                .order_by("pk")
                .values("pk")
            )
        moved = move_all(moving)
        rearm_all(
            [
                Rearm(
                    d.run_id,
                    d.ticket,
                    None
                    if d.poll_in_s is None
                    else (d.decided_at or now) + timedelta(seconds=d.poll_in_s),
                    d.attempt,
                    d.counters.api_calls,
                    d.counters.polls,
                    d.errors,
                )
                for d in taken.values()
                if d.ticket is not None
            ]
        )
    return {id(d): d.run_id in moved for d in taken.values()}


def move_all(decisions: list[Decision]) -> set[int]:
    """Make the decisions' moves, one ``transition_many`` per target status, source and set of
    fields saved; the ids of the runs moved."""
    groups: dict[tuple[str, str, tuple[str, ...]], dict[int, Move]] = {}
    for d in decisions:
        if d.move is not None:
            key = (d.move.to_status, d.move.source, tuple(sorted(d.move.fields)))
            groups.setdefault(key, {})[d.run_id] = d.move
    moved: set[int] = set()
    for (to_status, source, columns), moves in groups.items():

        def decide(run: Any, to: str = to_status, m: dict[int, Move] = moves):
            return to, m[run.pk].fields

        def detail(run_id: int, m: dict[int, Move] = moves) -> Mapping[str, Any]:
            return m[run_id].detail

        made = transition_many(list(moves), decide, source=source, detail=detail, columns=columns)
        moved.update(run_id for run_id, _, _ in made)
    return moved
