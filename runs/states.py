"""The run state machine: the only place where a run's status changes.

``pending`` (row exists, not sent) -> ``queued`` -> ``in_progress`` -> terminal, with
``requires_action`` (tool outputs owed) and ``cancelling`` in between. Terminal statuses are
sticky, and a stale remote status (an old poll answer) never moves a run backwards.

Every change is a compare-and-set: ``UPDATE run SET status = new WHERE id = ? AND status = old``
with the ``RunEvent`` written in the same transaction. Two writers racing on one run (a poll and a
webhook, two workers) therefore cannot both win: the loser's UPDATE matches no row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.db import router, transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from . import rawsql
from .models import Run, RunEvent
from .signals import run_status_changed
from .status import TERMINAL, EventSource, RunStatus

log = logging.getLogger(__name__)

S = RunStatus

#: For each target status, the statuses a run may move to it from. Remote statuses may skip
#: states (a run can be seen for the first time already completed), so forward jumps are allowed;
#: moving back (``in_progress`` -> ``queued``) is not, except that a tool round restarts the run.
ALLOWED_FROM: Mapping[str, frozenset[str]] = {
    S.PENDING: frozenset(),
    S.QUEUED: frozenset({S.PENDING, S.REQUIRES_ACTION}),
    S.IN_PROGRESS: frozenset({S.PENDING, S.QUEUED, S.REQUIRES_ACTION}),
    S.REQUIRES_ACTION: frozenset({S.PENDING, S.QUEUED, S.IN_PROGRESS}),
    S.CANCELLING: frozenset({S.QUEUED, S.IN_PROGRESS, S.REQUIRES_ACTION}),
    # Any non-terminal status may end; that is what makes every run reach a terminal state.
    **{
        t: frozenset({S.PENDING, S.QUEUED, S.IN_PROGRESS, S.REQUIRES_ACTION, S.CANCELLING})
        for t in TERMINAL
    },
}
_RESUMED = frozenset({S.QUEUED, S.IN_PROGRESS})
# A run that is being cancelled can still finish another way (the cancel lost the race), but it
# cannot become "un-cancelled".


def can_transition(
    from_status: str, to_status: str, source: str | None = None, decided_from: str | None = None
) -> bool:
    """Whether the state machine allows ``from_status`` -> ``to_status`` (pure; for tests too),
    made by ``source`` after reading the run in ``decided_from``, when they are given.

    A run waiting for tool outputs goes on (``queued``, ``in_progress``) by its tool round's
    submit (``EventSource.TOOL``), or by a writer that saw it waiting (the remote run went on:
    Assistants after a submit whose answer was lost). Any other writer decided from an answer
    read before the run asked for tools (a slow poll racing a webhook's wake), and taking it
    would undo the ``requires_action`` whose tools are about to run.
    """
    if (
        from_status == S.REQUIRES_ACTION
        and to_status in _RESUMED
        and source not in (None, EventSource.TOOL)
        and decided_from != S.REQUIRES_ACTION
    ):
        return False
    return from_status in ALLOWED_FROM.get(to_status, frozenset())


# Timestamps stamped by the state machine itself, so no caller forgets them.
_STAMPS = {S.IN_PROGRESS: "started_at"}


def transition(
    run_id: int,
    to_status: str,
    *,
    source: str,
    detail: Mapping[str, Any] | None = None,
    fields: Mapping[str, Any] | None = None,
    expected: str | None = None,
    strict: bool = False,
) -> bool:
    """Move a run to ``to_status`` if the state machine allows it from its current status.

    ``fields`` are saved in the same UPDATE (output, usage, errors...). ``expected`` is the status
    the caller just read, if any: it saves the read, and a wrong guess only costs that read.
    With ``strict``, it is not a guess but a condition: a run found in any other status is left
    as it is (a cancel decided on a run not yet created must not end one a start just created).
    Returns True when this call made the change; False when the run already was there, is
    terminal, or another writer moved it first to a status from which ``to_status`` is not
    allowed.
    """
    if to_status not in ALLOWED_FROM:
        raise ValueError(f"unknown run status {to_status!r}")
    now = timezone.now()
    values: dict[str, Any] = dict(fields or {})
    values["status"] = to_status
    if to_status in TERMINAL:
        values.setdefault("completed_at", now)
        values["next_poll_at"] = None
    elif to_status in _STAMPS:
        # The first time only: a run back in progress after its tool outputs keeps the start
        # it had (as ``transition_many`` keeps it), in the same UPDATE, with no read.
        stamp = _STAMPS[to_status]
        values.setdefault(stamp, Coalesce(F(stamp), Value(now)))

    # Read-then-CAS instead of "status IN (allowed)" so the event records the exact predecessor.
    # A lost race re-reads; the number of statuses bounds the loop.
    guess = expected
    for _ in range(len(RunStatus.values)):
        current = guess or Run.objects.filter(pk=run_id).values_list("status", flat=True).first()
        guess = None
        if current is None:
            raise Run.DoesNotExist(f"run {run_id} does not exist")
        if strict and current != expected:
            return False
        if not can_transition(current, to_status, source, expected or current):
            return False
        with transaction.atomic():
            if rawsql.writable(values):
                # Written out (``rawsql``): every single run's status change makes this UPDATE,
                # and the ORM's compile of it cost more CPU than the statement.
                cas = {"pk": run_id, "status": current}
                updated = rawsql.update(Run, values, cas, using=router.db_for_write(Run))
            else:
                updated = Run.objects.filter(pk=run_id, status=current).update(**values)
            if not updated:
                continue
            RunEvent.objects.create(
                run_id=run_id,
                from_status=current,
                to_status=to_status,
                source=source,
                detail=dict(detail or {}),
            )
            transaction.on_commit(
                lambda cur=current: run_status_changed.send(
                    sender=Run,
                    run_id=run_id,
                    from_status=cur,
                    to_status=to_status,
                    source=source,
                )
            )
        log.info("run %s: %s -> %s (%s)", run_id, current, to_status, source)
        return True
    return False


def transition_many(
    run_ids: Sequence[int],
    decide: Callable[[Run], tuple[str, Mapping[str, Any]] | None],
    *,
    source: str,
    detail: Mapping[str, Any] | Callable[[int], Mapping[str, Any]],
    columns: Sequence[str] = (),
    read: Sequence[str] = ("pk", "status"),
) -> list[tuple[int, str, str]]:
    """Move many runs as ``transition`` moves one, in three statements: lock the active ones
    (``SELECT ... FOR UPDATE``, in id order so two callers wait for each other, never deadlock),
    one UPDATE (``update_each``: from a list of values on PostgreSQL), one INSERT of their events.

    Why a bulk path: a batch of thousands ending at once must not cost thousands of round trips,
    yet its runs obey the same table, stamps and signals as any other. ``decide(run)`` (the run
    read under the lock, with the fields ``read`` names) gives the target and a value for each of
    ``columns``, or None to leave the run; a move the table refuses is skipped, and a run that
    ended meanwhile is not active, so a second call moves nothing. ``detail`` is every event's,
    or a function of the run's id giving each its own. Returns (id, from, to) per move.
    """
    now = timezone.now()
    moved: list[tuple[int, str, str]] = []
    with transaction.atomic():
        runs = Run.objects.select_for_update().filter(pk__in=run_ids).exclude(status__in=TERMINAL)
        changed = []
        stamps = ["completed_at", "next_poll_at", *_STAMPS.values()]
        # The stamps are read too: the UPDATE writes them back, and a deferred one would cost
        # a query per run.
        for run in runs.order_by("pk").only(*read, "status", *stamps, *columns):
            decided = decide(run)
            if decided is None or not can_transition(run.status, decided[0], source):
                continue
            to_status, values = decided
            moved.append((run.pk, run.status, to_status))
            run.status = to_status
            for name in columns:
                setattr(run, name, values[name])
            if to_status in TERMINAL:
                run.completed_at, run.next_poll_at = now, None
            elif to_status in _STAMPS and getattr(run, _STAMPS[to_status]) is None:
                setattr(run, _STAMPS[to_status], now)
            changed.append(run)
        # A column may be a stamp too (a start sets its first due time): each is written once.
        Run.objects.update_each(changed, list(dict.fromkeys(["status", *columns, *stamps])))
        detail_of = detail if callable(detail) else (lambda _pk: detail)
        RunEvent.objects.bulk_create(
            RunEvent(
                run_id=pk, from_status=old, to_status=new, source=source, detail=dict(detail_of(pk))
            )
            for pk, old, new in moved
        )
        if moved:
            transaction.on_commit(lambda: _announce(moved, source))
    return moved


def _announce(moved: list[tuple[int, str, str]], source: str) -> None:
    for run_id, old, new in moved:
        run_status_changed.send(
            sender=Run, run_id=run_id, from_status=old, to_status=new, source=source
        )
