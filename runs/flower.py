"""Making a run's tasks easy to find in Flower.

Our tasks take positional arguments (``runs.poll_run(42, 7)``). Flower's task search can match
keyword arguments exactly (``kwargs:run_id=42``) but arguments only as substrings of at least
three characters, so run 42 could not be told from run 420. ``name_task_arguments`` (a
``before_task_publish`` receiver) therefore sends every ``runs.*`` task's arguments *shown* by
name: Flower lists ``kwargs {'run_id': 42, 'generation': 7}``. Only the display copy that Celery
puts in the message headers (``argsrepr`` / ``kwargsrepr``) changes; the task still receives the
arguments it was called with.
"""

from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from celery import current_app

from . import tasks  # noqa: F401 - registers ours even where nothing else imported them
from .conf import settings


@lru_cache(maxsize=64)
def _signature(task_name: str) -> inspect.Signature | None:
    task = current_app.tasks.get(task_name)
    return inspect.signature(task.run) if task is not None else None


def named_arguments(task_name: str, args: Any, kwargs: Any) -> dict[str, Any] | None:
    """The call's arguments by parameter name, or None when they do not fit the signature."""
    sig = _signature(task_name)
    if sig is None:
        return None
    try:
        return dict(sig.bind(*(args or ()), **(kwargs or {})).arguments)
    except TypeError:
        return None


def name_task_arguments(
    sender: str | None = None,
    body: Any = None,
    headers: dict[str, Any] | None = None,
    **extra: Any,
) -> None:
    """``before_task_publish`` receiver: name the arguments of ``runs.*`` tasks for Flower."""
    if not headers or not (sender or "").startswith("runs.") or not isinstance(body, tuple | list):
        return
    named = named_arguments(sender, body[0], body[1])
    if named is not None:
        headers["argsrepr"] = "()"
        headers["kwargsrepr"] = repr(named)


def tasks_url(run_id: int) -> str | None:
    """Flower's task list filtered to this run's tasks; None without a ``FLOWER_URL`` (a link
    to ``/tasks`` on the host's own site would be a 404).

    Flower pre-fills its search box only from ``?state=``, ``?worker=`` and ``?name=`` (as
    ``name:<value>``); the value ``runs. kwargs:run_id=42`` becomes the query
    ``name:runs. kwargs:run_id=42``: any ``runs.*`` task whose ``run_id`` is exactly 42.
    """
    if not settings.FLOWER_URL:
        return None
    query = quote(f"runs. kwargs:run_id={run_id}", safe="")
    return f"{settings.FLOWER_URL.rstrip('/')}/tasks?name={query}"
