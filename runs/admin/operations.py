"""What the admin's actions do, as plain functions over runs (the admin only reports).

Each returns an ``Outcome``: one line per run it acted on and one per run it refused, so a
bulk action over fifty runs says exactly what happened to each. Nothing here calls OpenAI: a
cancel is sent by a task, a poll is an enqueued task.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError

from .. import services
from ..models import Run, ToolCall


@dataclass
class Outcome:
    done: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def cancel(runs: Iterable[Run], *, by: str) -> Outcome:
    outcome = Outcome()
    for run in runs:
        try:
            status = services.cancel_run(run, by=by)
        except ValidationError as exc:
            outcome.refused.append(" ".join(exc.messages))
        else:
            outcome.done.append(f"run {run.pk}: {status}")
    return outcome


def poll_now(runs: Iterable[Run]) -> Outcome:
    outcome = Outcome()
    for run in runs:
        if services.poll_now(run):
            outcome.done.append(f"run {run.pk}: poll enqueued")
        else:
            outcome.refused.append(
                f"run {run.pk} is {run.status}: only a run OpenAI knows and that has not ended "
                "can be polled"
            )
    return outcome


def retry(runs: Iterable[Run]) -> Outcome:
    outcome = Outcome()
    for run in runs:
        try:
            new = services.retry_run(run)
        except ValidationError as exc:
            outcome.refused.append(" ".join(exc.messages))
        else:
            outcome.done.append(f"run {run.pk} retried as run {new.pk}")
    return outcome


def give_tool_output(run: Run, call_id: str, output: str) -> ToolCall:
    """A manual tool's output, validated by the service; ``ValidationError`` changes nothing."""
    return services.submit_tool_output(run, call_id, output)
