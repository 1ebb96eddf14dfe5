"""A batch in the caller's request: made from runs (``services.submit_batch``) or from prompts
(``services.create_batch``), every check before anything is written; cancelled
(``request_cancel``). The worker's side, its ticks, is ``batch_lifecycle``.

A run joins a batch only if nothing else can send it: it is ``pending``, no start has claimed
it, it is in no batch, and it is single-turn (its thread holds its one message, no remote
conversation, no other run, no tools), because one line of a batch is one request with no
conversation to continue and no tool round to answer. The runs share one owner (the batch is
theirs) and one model (the Batch API takes one per file), run on the Responses API (the Batch
API's ``/v1/responses`` endpoint) and ask for no background window or processing tier of their
own (the batch's 24 h window and price apply).

Joining takes each run's start claim (``start_claimed_at``) in the same compare-and-set that
sets its batch (``bulk.join_batch``, the writer's statement), so a ``start_run`` racing the batch
finds the run claimed and creates nothing; the runs are locked while they are checked, so what
was checked is what joins.

``create`` makes the runs too (``services.create_batch``): thousands of prompts must not cost
thousands of ``create_run`` calls (each checks its options and spend limits and makes three
rows), so the options are checked once, the spend limits once, and the threads, messages and
runs are inserted in bulk: 10,000 prompts are a few dozen statements.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from .. import spend
from ..conf import settings
from ..models import Batch, Message, Run, Thread
from ..options import RunOptions
from ..status import Backend, BatchStatus, EventSource, Mode, RunStatus, Strategy
from . import batch_files, batch_runs, batch_writer, bulk, enqueue, writer
from .decisions import Task

SINGLE_TURN = "batch runs are single-turn: no tools, no conversation"
#: Tiers a batch line may not ask for: the batch's own processing and price apply.
REFUSED_TIERS = frozenset({"flex", "priority", "scale"})
#: Rows per INSERT when a batch's runs are made in bulk.
INSERT_CHUNK = 1000


def submit(runs: Iterable[Run | int], *, strategy: str | None = None) -> Batch:
    """Check ``runs``, make their ``Batch`` and enqueue ``runs.submit_batch`` on commit.
    ``ValidationError`` on any problem, with nothing written."""
    ids = sorted({run.pk if isinstance(run, Run) else run for run in runs})
    most = settings.RUNS_BATCH_MAX_RUNS
    if not 1 <= len(ids) <= most:
        raise ValidationError(f"a batch takes 1 to {most} runs; got {len(ids)}")
    strategy = strategy or settings.RUNS_STRATEGY
    if strategy not in Strategy.values:
        raise ValidationError(f"unknown strategy {strategy!r}; expected one of {Strategy.values}")
    with transaction.atomic():
        rows = list(Run.objects.select_for_update().filter(pk__in=ids).order_by("pk"))
        # Their threads too: no message or run is added to one between the checks and the join.
        threads = Thread.objects.select_for_update().filter(runs__pk__in=ids).order_by("pk")
        list(threads.values_list("pk", flat=True))
        _check(ids, rows)
        checks = sorted({(_key(r.metadata), r.model) for r in rows})
        # Every limited value's lock first, in one order: two submits never wait on each other.
        spend.lock_all([dict(metadata) for metadata, _ in checks], owner=rows[0].owner)
        for metadata, model in checks:
            spend.check(dict(metadata), owner=rows[0].owner, model=model)
        shared = dict(set.intersection(*(set(_key(r.metadata)) for r in rows)))
        return _make(ids, rows[0].owner, rows[0].model, shared, strategy)


def create(
    prompts: list[Any],
    *,
    model: str,
    instructions: str,
    metadata: dict[str, str],
    strategy: str,
    owner: str,
    chosen: RunOptions,
) -> Batch:
    """One new single-turn run per prompt, all in a new batch, sent on commit. The caller
    (``services.create_batch``) checked the owner, metadata, strategy and ``chosen`` options;
    the rest is checked here. ``ValidationError`` on any problem, with nothing written."""
    most = settings.RUNS_BATCH_MAX_RUNS
    if not 1 <= len(prompts) <= most:
        raise ValidationError(f"a batch takes 1 to {most} prompts; got {len(prompts)}")
    empty = [i for i, text in enumerate(prompts) if not isinstance(text, str) or not text.strip()]
    if empty:
        raise ValidationError(f"a message needs some text; prompt(s) {_few(empty)} have none")
    if not isinstance(model, str) or not model.strip() or len(model) > 64:
        raise ValidationError("model must be a non-empty name of at most 64 characters")
    model = model.strip()
    _check_window("these runs", chosen.completion_window, chosen.service_tier)
    like = Run(model=model, instructions=instructions, metadata=metadata, **chosen.fields())
    size, most = batch_files.input_size(like, prompts), batch_files.INPUT_MAX_BYTES
    if size > most:
        raise ValidationError(
            f"these prompts make an input file of {size:,} bytes; the Batch API takes at most"
            f" {most:,}: send fewer prompts, or shorter instructions, in each batch"
        )
    with transaction.atomic():
        # Every run has the same metadata, model and cap: one check stands for all of them.
        cap = chosen.max_output_tokens or 0
        ahead = spend.estimate(model, Mode.BATCH, cap) * (len(prompts) - 1)
        spend.check(metadata, owner=owner, model=model, ahead=ahead)
        threads = Thread.objects.bulk_create(
            [Thread(backend=Backend.RESPONSES, owner=owner) for _ in prompts],
            batch_size=INSERT_CHUNK,
        )
        said = zip(threads, prompts, strict=True)
        Message.objects.bulk_create(
            [Message(thread=t, role="user", content=text) for t, text in said],
            batch_size=INSERT_CHUNK,
        )
        made = Run.objects.bulk_create(
            [
                Run(
                    thread=thread,
                    owner=owner,
                    backend=Backend.RESPONSES,
                    strategy=strategy,
                    model=model,
                    instructions=instructions,
                    metadata=metadata,
                    **chosen.fields(),
                )
                for thread in threads
            ],
            batch_size=INSERT_CHUNK,
        )
        return _make([run.pk for run in made], owner, model, metadata, strategy)


def _make(ids: list[int], owner: str, model: str, metadata: dict[str, str], strategy: str) -> Batch:
    """The batch row, its runs joined to it (their start claims taken) and its submit enqueued
    on commit; inside the caller's transaction."""
    batch = Batch.objects.create(
        owner=owner,
        strategy=strategy,
        model=model,
        metadata=metadata,
        status=BatchStatus.PENDING,
        deadline_at=batch_files.deadline_from(timezone.now()),
    )
    joined = bulk.join_batch(
        ids, batch.pk, mode=Mode.BATCH, strategy=strategy, deadline_at=batch.deadline_at
    )
    if joined != len(ids):  # cannot happen under the lock; if it does, nothing is written
        raise ValidationError("some runs changed while the batch was made; nothing changed")
    writer.enqueue_on_commit(Task(enqueue.SUBMIT_BATCH, (batch.pk,)))
    return batch


def refuse_thread(thread: Thread) -> None:
    """Refuse (code ``conflict``) a message or a run on a batch's thread: the batch sends the
    thread's one prompt as its line, and a second run would be billed again at full price.
    Call it inside the transaction that adds to the thread: its row lock, taken here, keeps a
    batch (``submit`` locks its runs' threads) from taking it between the check and the insert."""
    list(Thread.objects.select_for_update().filter(pk=thread.pk).values_list("pk", flat=True))
    if batch_id := thread.runs.exclude(batch=None).values_list("batch_id", flat=True).first():
        raise ValidationError(
            f"thread {thread.pk} belongs to batch {batch_id}: {SINGLE_TURN}", code="conflict"
        )


def request_cancel(batch: Batch) -> str:
    """Cancel ``batch`` (``services.cancel_batch``); the status it has now. Not sent yet: it and
    its runs are ``cancelled`` at once (``ask_cancel`` took the submit claim, so no submit can
    start). Sent or being sent: ``cancelling``, and the ``runs.cancel_batch`` task asks OpenAI.
    Raises ``ValidationError`` (code ``conflict``) when it already ended: nothing changes."""
    asked = batch_writer.ask_cancel(batch.pk)
    if asked is None:
        batch.refresh_from_db(fields=["status"])
        raise ValidationError(f"batch {batch.pk} already ended ({batch.status})", code="conflict")
    if asked == BatchStatus.CANCELLED:
        code, message = "batch_cancelled", "cancelled before it was sent"
        batch_runs.end_all(batch.pk, asked, code, message, EventSource.USER)
        batch_writer.finish(batch.pk, asked, last_error_code=code, last_error=message)
    return asked


def _check(ids: list[int], rows: list[Run]) -> None:
    found = {r.pk for r in rows}
    missing = [pk for pk in ids if pk not in found]
    if missing:
        raise ValidationError(f"no run with id {_few(missing)}")
    owners = sorted({r.owner for r in rows})
    if len(owners) > 1:
        raise ValidationError(f"a batch's runs have one owner; these have {_few(owners)}")
    models = sorted({r.model for r in rows})
    if len(models) > 1:
        raise ValidationError(
            f"a batch holds requests for one model (the Batch API's rule); these use {_few(models)}"
        )
    threads = [r.thread_id for r in rows]
    said = _counts(Message.objects.filter(thread_id__in=threads))
    runs_of = _counts(Run.objects.filter(thread_id__in=threads))
    remote = set(
        Run.objects.filter(pk__in=ids).exclude(thread__remote_id="").values_list("pk", flat=True)
    )
    for run in rows:
        _check_run(run, said.get(run.thread_id, 0), runs_of.get(run.thread_id, 0), remote)


def _check_run(run: Run, messages: int, thread_runs: int, remote: set[int]) -> None:
    if run.status != RunStatus.PENDING or run.start_claimed_at is not None:
        state = run.status if run.status != RunStatus.PENDING else "being started"
        raise ValidationError(f"run {run.pk} is {state}: only runs never started join a batch")
    if run.batch_id is not None:
        raise ValidationError(f"run {run.pk} is already in batch {run.batch_id}")
    if run.backend != Backend.RESPONSES:
        raise ValidationError(
            f"run {run.pk} is on the {run.backend} API; batches run on the Responses API"
        )
    if run.tools:
        raise ValidationError(f"{SINGLE_TURN} (run {run.pk} has tools: {', '.join(run.tools)})")
    if run.pk in remote or messages != 1 or thread_runs != 1:
        raise ValidationError(
            f"{SINGLE_TURN} (run {run.pk}'s thread must hold its one message and no other run, "
            f"with no conversation at OpenAI; it holds {messages} message(s) and "
            f"{thread_runs} run(s))"
        )
    _check_window(f"run {run.pk}", run.completion_window, run.service_tier)


def _check_window(who: str, window: str, tier: str) -> None:
    if window not in ("", "soonest") or tier in REFUSED_TIERS:
        raise ValidationError(
            f"{who} ask(s) for completion_window={window!r}, service_tier={tier!r}: a batch "
            "runs in the Batch API's own 24 h window at its own price; drop them"
        )


def _counts(queryset: Any) -> dict[int, int]:
    return dict(queryset.values("thread_id").annotate(n=Count("pk")).values_list("thread_id", "n"))


def _key(metadata: dict[str, Any] | None) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(k), str(v)) for k, v in (metadata or {}).items()))


def _few(items: list[Any], most: int = 5) -> str:
    shown = ", ".join(str(i) for i in items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")
