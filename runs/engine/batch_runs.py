"""Moving a batch's runs: into the batch's statuses as it runs, and to their ends at once.

A batch of thousands must not cost thousands of round trips per move, so runs move in chunks of
``RUNS_BATCH_SETTLE_CHUNK``, each chunk three statements through the state machine's bulk path
(``states.transition_many``): lock the runs still active, one UPDATE, one INSERT of their
``RunEvent``s, under the same table, stamps and ``run_status_changed`` signals as a single move.
A run that ended meanwhile is not active and is left alone, which is what makes a second settle
(a redelivered task, a duplicate webhook's poll) move nothing.

This module decides what each run becomes (its line's output, usage, cost at batch rates, parsed
output); ``writer.py`` never sees these runs (they have no remote id of their own until their
line is read, so no run poll, wake or sweep touches them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.db.models import Subquery
from django.utils import timezone

from .. import pricing, structured
from ..conf import settings
from ..models import Batch, Message, Run
from ..states import transition_many
from ..status import ACTIVE, EventSource, Mode, RunStatus
from ..storable import json_problem, replaced
from .batch_files import LineResult, request_line, unmentioned

#: What an end saves on each run, besides its status and stamps.
END_COLUMNS = (
    "remote_id",
    "output_text",
    "usage",
    "cost",
    "parsed_output",
    "last_error_code",
    "last_error",
    "remote_completed_at",
)
#: Columns read under the lock (a decision may need the model or the schema).
_READ = ("pk", "status", "model", "response_format", "started_at", "completed_at", "next_poll_at")


def request_lines(batch_id: int) -> list[dict[str, Any]]:
    """One input line per open run of the batch, with the one message its thread holds."""
    messages = Message.objects.filter(thread__runs__batch_id=batch_id)
    said = {
        t: (text, role) for t, text, role in messages.values_list("thread_id", "content", "role")
    }
    runs = Run.objects.filter(batch_id=batch_id, status__in=ACTIVE).order_by("pk")
    return [request_line(r, *said[r.thread_id]) for r in runs if r.thread_id in said]


def sent(batch_id: int) -> None:
    """The batch was created at OpenAI: its messages are sent, its pending runs ``queued`` with
    the batch's deadline (counted from the create: ``batch_writer.submitted``)."""
    messages = Message.objects.filter(thread__runs__batch_id=batch_id, sent_at__isnull=True)
    messages.update(sent_at=timezone.now())
    deadline = Batch.objects.filter(pk=batch_id).values("deadline_at")
    pending = Run.objects.filter(batch_id=batch_id, status=RunStatus.PENDING)
    pending.update(deadline_at=Subquery(deadline))
    move_runs(batch_id, (RunStatus.PENDING,), RunStatus.QUEUED, EventSource.CREATE)


def end_all(batch_id: int, status: str, code: str, message: str, source: str) -> int:
    """End every open run of a batch that ends here with ``status`` (not by its files), as a run
    its files do not mention would end, with ``code`` and ``message``. Returns runs moved."""
    to = unmentioned(status, 0).status

    def ended(run_id: int) -> LineResult:
        return LineResult(run_id, to, error_code=code, error_message=message)

    return settle(batch_id, {}, ended, source)


def move_runs(batch_id: int, from_statuses: Sequence[str], to_status: str, source: str) -> int:
    """Move the batch's runs in ``from_statuses`` to ``to_status`` (no fields), chunk by chunk."""
    ids = Run.objects.filter(batch_id=batch_id, status__in=from_statuses).order_by("pk")
    moved = 0
    for part in _chunks(list(ids.values_list("pk", flat=True))):
        moved += len(move_many(part, lambda run: (to_status, {}), source=source, batch_id=batch_id))
    return moved


def settle(
    batch_id: int,
    results: Mapping[int, LineResult],
    otherwise: Callable[[int], LineResult],
    source: str,
) -> int:
    """End every run of the batch still open: with its line's result, else ``otherwise(run_id)``
    (a run no file mentions). A run that ended meanwhile is left as it is. Returns runs moved."""
    open_ids = Run.objects.filter(batch_id=batch_id, status__in=ACTIVE).order_by("pk")
    moved = 0
    for part in _chunks(list(open_ids.values_list("pk", flat=True))):

        def ended(run: Run) -> tuple[str, dict[str, Any]]:
            return end_fields(run, results.get(run.pk) or otherwise(run.pk))

        moved += len(move_many(part, ended, columns=END_COLUMNS, source=source, batch_id=batch_id))
    return moved


def end_fields(run: Run, result: LineResult) -> tuple[str, dict[str, Any]]:
    """A run's terminal status and fields from its line: the output, usage, cost at batch rates,
    and for a structured run its parsed output, or ``failed`` when the output does not match."""
    status = result.status
    # What a file says is kept as the database can hold it: a NUL (JSON's \u0000) or a lone
    # surrogate replaced, an id or code cut to its column, a usage holding one dropped.
    # PostgreSQL refuses them, and a settle that raised would fail again at every poll: the
    # batch would never end.
    usage = result.usage if result.usage is None or not json_problem(result.usage) else None
    fields: dict[str, Any] = {
        "remote_id": replaced(result.remote_id)[: _width("remote_id")],
        "output_text": replaced(result.output_text),
        "usage": usage,
        "cost": pricing.cost_of(run.model, usage, Mode.BATCH),
        "parsed_output": None,
        "last_error_code": replaced(result.error_code)[: _width("last_error_code")],
        "last_error": replaced(result.error_message),
        "remote_completed_at": result.remote_completed_at,
    }
    if status == RunStatus.COMPLETED and run.response_format:
        checked = structured.check(run.response_format, result.output_text)
        if checked.ok:
            fields["parsed_output"] = checked.parsed
        else:
            status = RunStatus.FAILED
            fields.update(last_error_code=checked.error_code, last_error=checked.error)
    return status, fields


def move_many(
    run_ids: Sequence[int],
    decide: Callable[[Run], tuple[str, Mapping[str, Any]] | None],
    *,
    source: str,
    batch_id: int,
    columns: Sequence[str] = (),
) -> list[tuple[int, str, str]]:
    """Move many runs of batch ``batch_id`` through the state machine in three statements
    (``states.transition_many``); ``decide(run)`` gives each its target and ``columns``."""
    return transition_many(
        run_ids,
        decide,
        source=source,
        detail={"batch_id": batch_id},
        columns=columns,
        read=_READ,
    )


def _width(field: str) -> int:
    """A ``Run`` column's ``max_length``: what a value from a file is cut to."""
    width = Run._meta.get_field(field).max_length
    assert width is not None
    return width


def _chunks(ids: list[int]) -> list[list[int]]:
    size = max(1, int(settings.RUNS_BATCH_SETTLE_CHUNK))
    return [ids[i : i + size] for i in range(0, len(ids), size)]
