"""Deadline rules, as pure functions: how long a run has left, and what to tell when it runs out.

Every place that ends a run for lack of time (a poll tick, a run waiting for tool outputs, the
sweep for a run that never started) asks here, so the rules and the messages are one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.utils import timezone

from . import options

if TYPE_CHECKING:
    from .models import Run

CODE = "deadline_exceeded"


def remaining_s(run: Run, now: datetime | None = None) -> float | None:
    """Seconds until the run's deadline (negative once past); None for a run without one."""
    if run.deadline_at is None:
        return None
    return (run.deadline_at - (now or timezone.now())).total_seconds()


def is_past(run: Run, now: datetime | None = None) -> bool:
    remaining = remaining_s(run, now)
    return remaining is not None and remaining <= 0


def for_new_response(run: Run, now: datetime | None = None) -> datetime | None:
    """A later deadline for a windowed run whose response starts now, or None if it needs none.

    The window starts when OpenAI gets the request, not when the run was created: a start that
    waited (the queue, the request budget, retries) or a tool round (on Responses each round is
    a new background response, with a window of its own) would otherwise be expired while on
    time. So each new response gets at least its window plus ``RUNS_WINDOW_GRACE_S`` from now;
    a longer deadline the caller gave is kept.
    """
    if options.window_s(run.completion_window) is None:
        return None
    needed = (now or timezone.now()) + timedelta(
        seconds=options.deadline_s(run.completion_window, None)
    )
    return needed if run.deadline_at is None or needed > run.deadline_at else None


def length_s(run: Run) -> float:
    """The deadline the run was given, in seconds from its creation (0 when it has none)."""
    if run.deadline_at is None or run.created_at is None:
        return 0.0
    return (run.deadline_at - run.created_at).total_seconds()


def message(run: Run, *, owed: Sequence[str] = (), cancelled_remotely: bool = True) -> str:
    """Why the run expired, for ``last_error``: what it was doing and, if any, the owed outputs."""
    if run.status == "pending":
        return "The run could not be started before its deadline."
    if owed or run.status == "requires_action":
        names = ", ".join(owed) or "none recorded"
        text = (
            f"The run waited for tool outputs past its deadline of {length_s(run):.0f} s; "
            f"still owed: {names}."
        )
        return text + (" It was cancelled at OpenAI." if cancelled_remotely else "")
    # An outage the run waited out to its deadline: say so, or it reads as a slow model.
    n = run.error_retries
    failing = f"; its last {n} calls failed" if n > 1 else "; its last call failed" if n else ""
    return (
        f"The run did not finish within its deadline of {length_s(run):.0f} s "
        f"(last status: {run.status}{failing}); it was cancelled at OpenAI."
    )


def cap_delay(run: Run, delay: float) -> float:
    """``delay``, or less when the deadline comes first: the deadline is acted on within a tick."""
    remaining = remaining_s(run)
    if remaining is None:
        return delay
    return max(min(delay, remaining + 0.05), 0.05)
