"""The deadline, acted on: a run past it ends ``expired`` with a message that says why, and is
cancelled at OpenAI where something still runs there. The rules are ``runs.deadline``'s; this is
the one place that turns them into a decision (a poll tick, a run waiting for tool outputs and the
sweep's never-started runs all come here)."""

from __future__ import annotations

from .. import deadline
from ..backends.registry import get_backend
from ..models import Run
from ..status import EventSource, RunStatus
from .decisions import Counters, Decision, Move
from .tool_calls import owed_calls


def expire(run: Run, *, ticket: int | None = None, counters: Counters | None = None) -> Decision:
    """The decision that ends ``run`` (as read) for passing its deadline."""
    owed = owed_calls(run) if run.status == RunStatus.REQUIRES_ACTION else []
    remote_runs = bool(run.remote_id)
    detail: dict[str, object] = {"last_status": run.status}
    if run.status == RunStatus.REQUIRES_ACTION:
        # A Responses run that waits has nothing running remotely (the response completed).
        remote_runs = get_backend(run.backend).capabilities.remote_waits_for_tool_outputs
        detail["owed_tool_calls"] = [c.call_id for c in owed]
    return Decision(
        run_id=run.pk,
        outcome=RunStatus.EXPIRED,
        ticket=ticket,
        counters=counters or Counters(),
        move=Move(
            RunStatus.EXPIRED,
            EventSource.SWEEP if run.status == RunStatus.PENDING else EventSource.DEADLINE,
            expected=run.status,
            # A pending run has nothing remote to cancel, unless a start saved it meanwhile.
            strict=run.status == RunStatus.PENDING,
            fields={
                "last_error_code": deadline.CODE,
                "last_error": deadline.message(
                    run,
                    owed=[f"{c.name} ({c.call_id}, {c.state})" for c in owed],
                    cancelled_remotely=remote_runs,
                ),
            },
            detail=detail,
        ),
        cancel_remote=remote_runs,
    )
