"""Sending the engine's tasks by their registered names.

The engine sits below ``tasks.py`` (which only wraps engine functions), so it must not import it:
it asks the current Celery app for a signature by name. ``Signature.apply_async`` resolves the
registered task when this process has it (honouring its options and ``task_always_eager``) and
falls back to ``send_task`` otherwise (a web process that never imported ``runs.tasks``); routing
(``task_routes``) applies either way, because it is keyed by name.
"""

from __future__ import annotations

from typing import Any

from celery import current_app

START_RUN = "runs.start_run"
POLL_RUN = "runs.poll_run"
CANCEL_RUN = "runs.cancel_run"
RESUME_TOOL_ROUND = "runs.resume_tool_round"
EXECUTE_TOOL_CALLS = "runs.execute_tool_calls"


def send(name: str, *args: Any, countdown: float | None = None) -> None:
    """Enqueue task ``name`` with positional ``args``, after ``countdown`` seconds if given."""
    options: dict[str, Any] = {}
    if countdown is not None and countdown > 0:
        options["countdown"] = countdown
    current_app.signature(name, args=args).apply_async(**options)
