"""The Python API for applications: create threads and runs, then start them.

    run = create_run("Summarise this ticket ...")
    start_run.delay(run.id)          # or start(run), which waits for the commit

Bad input raises ``django.core.exceptions.ValidationError`` and writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from .models import Message, Run, Thread
from .status import Backend, Strategy

MAX_METADATA_KEYS = 15  # OpenAI allows 16; we add our own run_id.


def _check_choice(value: str, choices: type[Backend] | type[Strategy], what: str) -> str:
    if value not in choices.values:
        raise ValidationError(
            f"unknown {what} {value!r}; expected one of: {', '.join(choices.values)}"
        )
    return value


def _check_metadata(metadata: Mapping[str, Any] | None) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise ValidationError("metadata must be a mapping of strings to strings")
    if len(metadata) > MAX_METADATA_KEYS:
        raise ValidationError(f"metadata has {len(metadata)} keys; at most {MAX_METADATA_KEYS}")
    clean: dict[str, str] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not key or len(key) > 64:
            raise ValidationError(f"metadata key {key!r} must be a string of 1-64 characters")
        if not isinstance(value, str | int | float | bool) or len(str(value)) > 512:
            raise ValidationError(f"metadata value for {key!r} must be a string up to 512 chars")
        clean[key] = str(value)
    return clean


def create_thread(
    *, backend: str | None = None, metadata: Mapping[str, Any] | None = None
) -> Thread:
    backend = _check_choice(backend or settings.RUNS_BACKEND, Backend, "backend")
    return Thread.objects.create(backend=backend, metadata=_check_metadata(metadata))


def add_message(thread: Thread, content: str, *, role: str = "user") -> Message:
    if not isinstance(content, str) or not content.strip():
        raise ValidationError("a message needs some text")
    if role not in ("user", "assistant", "system", "developer"):
        raise ValidationError(f"unknown message role {role!r}")
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
) -> Run:
    """Create a ``pending`` run (and its thread and first message when ``text`` is given).

    Nothing is sent to OpenAI until ``start_run`` runs.
    """
    if thread is None and not (isinstance(text, str) and text.strip()):
        raise ValidationError("give the text of the first message, or an existing thread")
    backend = _check_choice(
        backend or (thread.backend if thread else settings.RUNS_BACKEND), Backend, "backend"
    )
    if thread is not None and thread.backend != backend:
        raise ValidationError(f"thread {thread.pk} belongs to the {thread.backend} backend")
    strategy = _check_choice(strategy or settings.RUNS_STRATEGY, Strategy, "strategy")
    if backend == Backend.ASSISTANTS:
        # The Assistants API sends no run webhooks: such runs are tracked by polling only.
        strategy = Strategy.POLL
    model = model or settings.RUNS_DEFAULT_MODEL
    if not isinstance(model, str) or not model.strip() or len(model) > 64:
        raise ValidationError("model must be a non-empty name of at most 64 characters")
    deadline_s = settings.RUNS_DEADLINE_S if deadline_s is None else deadline_s
    if not 0 < deadline_s <= 7 * 24 * 3600:
        raise ValidationError("deadline_s must be between 0 and one week")
    clean_meta = _check_metadata(metadata)
    with transaction.atomic():
        if thread is None:
            thread = Thread.objects.create(backend=backend)
        if text:
            add_message(thread, text)
        return Run.objects.create(
            thread=thread,
            backend=backend,
            strategy=strategy,
            model=model.strip(),
            instructions=instructions,
            metadata=clean_meta,
            tools=list(tools or []),
            deadline_at=timezone.now() + timedelta(seconds=deadline_s),
        )


def start(run: Run) -> None:
    """Enqueue ``start_run`` once the current transaction commits (so the worker sees the row)."""
    from .tasks import start_run

    transaction.on_commit(lambda: start_run.delay(run.pk))
