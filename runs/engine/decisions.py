"""What a tick concluded, as a value: computed from the row as read and the API's answer or error,
applied by ``writer.apply``. procrastinate's ``RetryDecision`` is the model: one exit per tick,
whatever happened, so "every path re-arms with the caller's ticket" is a property of the writer,
not a convention every branch must remember.

A decision is plain data (no database handle, no client), so ticks can be computed in bulk and
their decisions applied together (``writer.apply_all``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

#: What to do with the run's count of transient errors in a row.
Errors = Literal["keep", "reset", "count"]


@dataclass(frozen=True)
class Counters:
    """API calls made, polls made and webhook events applied during one tick."""

    api_calls: int = 0
    polls: int = 0
    webhook_events: int = 0

    def __add__(self, other: Counters) -> Counters:
        return Counters(
            self.api_calls + other.api_calls,
            self.polls + other.polls,
            self.webhook_events + other.webhook_events,
        )

    def __bool__(self) -> bool:
        return bool(self.api_calls or self.polls or self.webhook_events)


@dataclass(frozen=True)
class Move:
    """A status change for the state machine, with what to save alongside it."""

    to_status: str
    source: str
    #: The status the tick read: the state machine's compare-and-set starts from it.
    expected: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    detail: Mapping[str, Any] = field(default_factory=dict)
    #: Made only from ``expected``: a move decided because the run was not at OpenAI yet (a
    #: cancel or an expiry of a pending run) is wrong once a start has saved it as created.
    strict: bool = False


@dataclass(frozen=True)
class Task:
    """A task to enqueue once the tick's writes are done (by registered name: see ``enqueue``)."""

    name: str
    args: tuple[Any, ...]
    countdown: float | None = None


@dataclass(frozen=True)
class Decision:
    """One tick's conclusion. Every field is optional: a decision says only what changes."""

    run_id: int
    #: What happened, in a word or a status: the task's result and the log's vocabulary.
    outcome: str
    #: The poll ticket the tick holds. Re-arming is a compare-and-set on it, so a tick whose
    #: ticket was taken meanwhile (a webhook woke the run) re-arms nothing and never doubles polls.
    ticket: int | None = None
    move: Move | None = None
    #: Poll again after this many seconds (None: this tick arms no poll). Any length: the writer
    #: stores the due time and hands the broker at most ``RUNS_MAX_COUNTDOWN_S`` of it.
    poll_in_s: float | None = None
    #: The schedule position stored with the next poll (None: unchanged).
    attempt: int | None = None
    #: The next poll is left to ``runs.poll_due`` (stored as ``Run.poll_by_due``; no countdown
    #: task), as a tick decides it (``poll_modes.next_by_due``). None: the run keeps what it
    #: has (a tool round's resume, which says nothing about lateness).
    by_due: bool | None = None
    #: This tick hands the run to the batches ("auto": it ran late), counted once written.
    hands_over: bool = False
    #: The run's remote object changed (a tool round on Responses creates a new response).
    remote_id: str | None = None
    counters: Counters = field(default_factory=Counters)
    errors: Errors = "keep"
    #: For a start that did not happen: release the claim and start again after this long.
    start_in_s: float | None = None
    then: tuple[Task, ...] = ()
    #: Best-effort remote cancel once the move is made (the run ended here, not at OpenAI).
    cancel_remote: bool = False
    #: Tool calls whose outputs OpenAI accepted: marked ``submitted`` in the same transaction as
    #: the move and the new remote id, so no crash can leave "sent" calls on a run that still
    #: points at the remote object that asked for them (it would wait on it for ever).
    submitted_calls: tuple[int, ...] = ()
    #: When the tick concluded, if it was not just now: the next poll is due ``poll_in_s`` after
    #: it. A batch stamps each decision as its retrieve answers (``batch_poll.decide_one``) and
    #: writes them all once the slowest has answered; counted from the write, every run of the
    #: batch would be polled late by up to the batch's wall time.
    decided_at: datetime | None = None
