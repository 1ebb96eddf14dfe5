"""The Python API for applications: create threads and runs, then start them.

    run = create_run("Summarise this ticket ...")
    start_run.delay(run.id)          # or start(run), which waits for the commit

Bad input raises ``django.core.exceptions.ValidationError`` and writes nothing.

Owners: a thread and its runs belong to an owner, ``client:<name>`` (an API token's client,
which sees only its own) or ``user:<pk>`` (``user_owner(user)``), or nobody (blank, the default
for code that does not say). The admin is global whatever the owner.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from . import options, spend
from .arguments import MAX_METADATA_KEYS, check_choice, check_metadata, check_owner, check_text
from .backends.registry import get_backend
from .conf import settings
from .engine import batch_intake, cancel, enqueue, tool_calls, tool_round, writer
from .engine.decisions import Task
from .models import Batch, Message, Run, Thread, ToolCall
from .status import TERMINAL, Backend, RunStatus, Strategy
from .tools import clean_tool_names


def user_owner(user: Any) -> str:
    """The owner key of a Django user's rows: ``user:<pk>``."""
    return f"user:{user.pk}"


def create_thread(
    *, backend: str | None = None, metadata: Mapping[str, Any] | None = None, owner: str = ""
) -> Thread:
    backend = check_choice(backend or settings.RUNS_BACKEND, Backend, "backend")
    return Thread.objects.create(
        backend=backend, metadata=check_metadata(metadata), owner=check_owner(owner)
    )


def add_message(thread: Thread, content: str, *, role: str = "user") -> Message:
    """Add a message to ``thread``; the next run started on it carries the message to OpenAI. A
    batch's thread is refused (code ``conflict``): its one prompt is the line the batch sends."""
    with transaction.atomic():
        batch_intake.refuse_thread(thread)
        return _add_message(thread, content, role=role)


def _add_message(thread: Thread, content: str, *, role: str = "user") -> Message:
    if not isinstance(content, str) or not content.strip():
        raise ValidationError("a message needs some text")
    if role not in ("user", "assistant", "system", "developer"):
        raise ValidationError(f"unknown message role {role!r}")
    content = check_text(content, "message text")
    return Message.objects.create(thread=thread, role=role, content=content)


def create_run(
    text: str | None = None,
    *,
    thread: Thread | None = None,
    model: str | None = None,
    instructions: str = "",
    metadata: Mapping[str, Any] | None = None,
    backend: str | None = None,
    strategy: str | None = None,
    tools: list[str] | None = None,
    deadline_s: float | None = None,
    owner: str | None = None,
    completion_window: str | None = None,
    service_tier: str | None = None,
    response_format: Any = None,
    reasoning_effort: str | None = None,
    max_output_tokens: int | None = None,
    prompt_cache_key: str | None = None,
    safety_identifier: str | None = None,
) -> Run:
    """Create a ``pending`` run (and its thread and first message when ``text`` is given).

    The run belongs to its thread's owner: ``owner`` None takes the thread's (or blank for a new
    thread); an ``owner`` that is not the given thread's is refused, so nobody runs on (and reads
    the answer of) someone else's conversation. Nothing is sent to OpenAI until ``start_run``.

    Run options (docs/api.md, "Run options"; checked by ``runs/options.py``):
    ``completion_window`` "soonest" | "2h" | "8h" (discounted background windows, standard
    processing only), ``service_tier`` (e.g. "flex"), ``response_format`` (a JSON schema dict or
    a pydantic model class: the run stores the schema and, once completed, ``parsed_output``),
    ``reasoning_effort``, ``max_output_tokens``, ``prompt_cache_key``, ``safety_identifier``.
    A windowed run's default deadline is its window plus ``RUNS_WINDOW_GRACE_S``; a shorter
    ``deadline_s`` than the window is refused. A spend limit (``RUNS_SPEND_LIMITS``) may refuse
    the run; either way nothing is written.
    """
    if thread is None and not (isinstance(text, str) and text.strip()):
        raise ValidationError("give the text of the first message, or an existing thread")
    if thread is not None and owner is not None and owner != thread.owner:
        raise ValidationError(f"thread {thread.pk} belongs to another owner")
    owner = check_owner(thread.owner if thread is not None else owner or "")
    backend = check_choice(
        backend or (thread.backend if thread else settings.RUNS_BACKEND), Backend, "backend"
    )
    if thread is not None and thread.backend != backend:
        raise ValidationError(f"thread {thread.pk} belongs to the {thread.backend} backend")
    strategy = check_choice(strategy or settings.RUNS_STRATEGY, Strategy, "strategy")
    if not get_backend(backend).capabilities.webhooks:
        # OpenAI sends no webhooks for this API's runs: they are tracked by polling only.
        strategy = Strategy.POLL
    model = model or settings.RUNS_DEFAULT_MODEL
    if not isinstance(model, str) or not model.strip() or len(model) > 64:
        raise ValidationError("model must be a non-empty name of at most 64 characters")
    check_text(model, "model")
    check_text(instructions, "instructions")
    chosen = options.clean(
        completion_window=completion_window,
        service_tier=service_tier,
        response_format=response_format,
        reasoning_effort=reasoning_effort,
        max_output_tokens=max_output_tokens,
        prompt_cache_key=prompt_cache_key,
        safety_identifier=safety_identifier,
    )
    _check_backend_options(chosen, backend)
    deadline_s = options.deadline_s(chosen.completion_window, deadline_s)
    if not 0 < deadline_s <= 7 * 24 * 3600:
        raise ValidationError("deadline_s must be between 0 and one week")
    clean_meta = check_metadata(metadata)
    clean_tools = clean_tool_names(tools)
    with transaction.atomic():
        if thread is not None:
            batch_intake.refuse_thread(thread)
        # Before any insert: a refused run leaves nothing behind (spend limits, issue 16).
        spend.check(clean_meta, owner=owner, model=model.strip())
        if thread is None:
            thread = Thread.objects.create(backend=backend, owner=owner)
        if text:
            _add_message(thread, text)
        return Run.objects.create(
            thread=thread,
            owner=owner,
            backend=backend,
            strategy=strategy,
            model=model.strip(),
            instructions=instructions,
            metadata=clean_meta,
            tools=clean_tools,
            deadline_at=timezone.now() + timedelta(seconds=deadline_s),
            **chosen.fields(),
        )


def _check_backend_options(chosen: options.RunOptions, backend: str) -> None:
    """Refuse an option the run's API cannot carry, rather than send the run without it."""
    defaults = options.RunOptions()
    for name, why in get_backend(backend).capabilities.unsupported_options.items():
        if getattr(chosen, name) != getattr(defaults, name):
            value = getattr(chosen, name)
            raise ValidationError(f"{name}={value!r} on the {backend} backend: {why}")


def start(run: Run) -> None:
    """Enqueue ``start_run`` once the current transaction commits (so the worker sees the row)."""
    writer.enqueue_on_commit(Task(enqueue.START_RUN, (run.pk,)))


def poll_now(run: Run) -> bool:
    """Look at a run now instead of on its schedule; False for a run OpenAI does not know or
    that has ended (nothing to poll)."""
    return writer.wake(run.pk)


def cancel_run(run: Run, *, by: str = "") -> str:
    """Cancel a run; returns ``cancelled`` (not sent yet) or ``cancelling`` (OpenAI is asked by
    the ``runs.cancel_run`` task, never in your request). A run that already ended raises
    ``ValidationError`` (code ``conflict``) and nothing changes. See ``runs/engine/cancel.py``.
    """
    return cancel.request_cancel(run, by=by)


def retry_run(run: Run) -> Run:
    """Start a new run with the same input and settings as ``run``, which must have ended.

    A new thread carries copies of the messages ``run`` was given: re-using the old conversation
    would hand the model the failed attempt too. The new run's metadata names the original
    (``retry_of``) when there is room for one more key; it has the original's owner, whoever
    asks (an operator retrying a client's run from the admin leaves it the client's).
    """
    if run.status not in TERMINAL:
        raise ValidationError(
            f"run {run.pk} is still {run.status}: cancel it before retrying", code="conflict"
        )
    metadata = dict(run.metadata or {})
    if "retry_of" in metadata or len(metadata) < MAX_METADATA_KEYS:
        metadata["retry_of"] = str(run.pk)
    messages = run.thread.messages.filter(created_at__lte=run.created_at)
    deadline_s = _retry_deadline_s(run)
    with transaction.atomic():
        thread = create_thread(backend=run.backend, metadata=run.thread.metadata, owner=run.owner)
        for message in messages:
            _add_message(thread, message.content, role=message.role)
        new = create_run(
            thread=thread,
            model=run.model,
            instructions=run.instructions,
            metadata=metadata,
            backend=run.backend,
            strategy=run.strategy,
            tools=list(run.tools or []),
            deadline_s=deadline_s,
            **options.of_run(run),
        )
        start(new)
    return new


def _retry_deadline_s(run: Run) -> float | None:
    """The default again if the original had it, else its length, at least the window: read
    back as ``deadline_at - created_at`` it is a few microseconds short (``created_at`` is
    stamped after), and a run given exactly its window would be refused on retry."""
    if run.deadline_at is None:
        return None
    length = (run.deadline_at - run.created_at).total_seconds()
    if abs(length - options.deadline_s(run.completion_window, None)) < 1.0:
        return None
    window = options.window_s(run.completion_window)
    return length if window is None else max(length, window)


def owed_tool_calls(run: Run) -> list[ToolCall]:
    """The tool calls of ``run`` still waiting for an output (manual ones wait for you)."""
    return tool_calls.owed_calls(run) if run.status == RunStatus.REQUIRES_ACTION else []


def submit_tool_output(run: Run, call_id: str, output: str) -> ToolCall:
    """Give the output of a manual tool call; the returned ``ToolCall`` holds it.

    When it was the last output the round owed, the ``runs.resume_tool_round`` task submits the
    round on commit (never in your request) and polling resumes. Bad input (not a string, longer
    than ``RUNS_TOOL_OUTPUT_MAX_BYTES`` in UTF-8, an unknown call id, a call already answered, a
    run not waiting for outputs) raises ``ValidationError`` and changes nothing.
    """
    if not isinstance(call_id, str) or not call_id:
        raise ValidationError("call_id must be the id of one of the run's tool calls")
    if not isinstance(output, str):
        raise ValidationError(
            f"the output must be a string (serialise structured results as JSON), "
            f"not {type(output).__name__}"
        )
    check_text(call_id, "call_id")
    check_text(output, "the output")
    size, limit = len(output.encode()), settings.RUNS_TOOL_OUTPUT_MAX_BYTES
    if size > limit:  # OpenAI's refusal would fail the whole run; this keeps the call to resend
        raise ValidationError(
            f"the output is {size:,} bytes, over RUNS_TOOL_OUTPUT_MAX_BYTES ({limit:,})"
        )
    try:
        return tool_round.give_output(run, call_id, output)
    except (LookupError, ValueError) as exc:
        raise ValidationError(str(exc)) from None


def submit_batch(runs: Iterable[Run | int], *, strategy: str | None = None) -> Batch:
    """Send pending single-turn runs as one Batch API job (docs/batches.md). Checked first,
    ``ValidationError`` with nothing written: 1 to ``RUNS_BATCH_MAX_RUNS`` runs, ``pending`` and
    never started, in no batch, one owner, the Responses API, single-turn (no tools, no
    conversation), within the spend limits. ``runs.submit_batch`` sends it on commit."""
    return batch_intake.submit(runs, strategy=strategy)


def create_batch(
    prompts: Iterable[str],
    *,
    model: str | None = None,
    instructions: str = "",
    metadata: Mapping[str, Any] | None = None,
    strategy: str | None = None,
    owner: str = "",
    **run_options: Any,
) -> Batch:
    """One run per prompt (``create_run``'s options apply to each), submitted as one batch.
    All or nothing: a bad prompt or option, and no run or batch is written. The input is checked
    once and the rows made in bulk (``batch_intake.create``), not one ``create_run`` per prompt."""
    if run_options.pop("tools", None):
        raise ValidationError(f"{batch_intake.SINGLE_TURN}: a batch's runs take no tools")
    chosen = options.clean(**run_options)
    _check_backend_options(chosen, Backend.RESPONSES)
    texts = [prompts] if isinstance(prompts, str) else list(prompts)
    for i, text in enumerate(texts):  # a prompt that is no text at all: batch_intake says so
        if isinstance(text, str):
            check_text(text, f"prompt {i}")
    model = model or settings.RUNS_DEFAULT_MODEL
    if isinstance(model, str):
        check_text(model, "model")
    return batch_intake.create(
        texts,
        model=model,
        instructions=check_text(instructions, "instructions"),
        metadata=check_metadata(metadata),
        strategy=check_choice(strategy or settings.RUNS_STRATEGY, Strategy, "strategy"),
        owner=check_owner(owner),
        chosen=chosen,
    )


def cancel_batch(batch: Batch, *, by: str = "") -> str:
    """``cancelled`` at once if not sent yet, else ``cancelling`` (``runs.cancel_batch`` asks
    OpenAI; each open run then ends as the batch's files say). An ended batch raises
    ``ValidationError`` (code ``conflict``)."""
    return batch_intake.request_cancel(batch)
