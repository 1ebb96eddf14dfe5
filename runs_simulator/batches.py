"""The Batch record: a timeline fixed at creation, a status read from the clock.

Why lazy, like responses: a batch's whole life is known when it is created (how long it
validates, when each line ends, when it finalizes, whether it expires first), so its status,
``request_counts`` and ``usage`` are pure functions of the clock and nothing runs in the
background. Only a cancel changes the plan. The output and error files are written once, on the
first read (or webhook) after the batch ends (``batch_service.settle``).

Statuses: ``validating`` → ``in_progress`` → ``finalizing`` → ``completed``; ``validating`` →
``failed`` (the input file did not validate); ``expired`` at ``expires_at`` when the lines
cannot all end before it; ``cancelling`` → ``cancelled`` after a cancel. Rendered as the SDK's
``Batch`` (timestamps the batch has not reached are null, as the API sends them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .batch_lines import Line

TERMINAL_BATCH = frozenset({"completed", "failed", "expired", "cancelled"})


@dataclass
class BatchRecord:
    """One batch and its planned timeline."""

    id: str
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str]
    created_at: float
    in_progress_at: float  # the end of validation
    finalizing_at: float
    completed_at: float
    expires_at: float
    expires: bool  # whether it reaches expires_at before finalizing (or is forced to)
    lines: list[Line]
    errors: list[dict[str, Any]]
    model: str | None = None
    output_ttl_s: int | None = None
    cancelling_at: float | None = None
    cancelled_at: float | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    settled: bool = False
    webhook_token: int = 0

    @property
    def stop_at(self) -> float:
        """When lines stop running: a cancel's end, the expiry, or the start of finalizing."""
        stop = self.finalizing_at
        if self.expires:
            stop = min(stop, self.expires_at)
        if self.cancelled_at is not None:
            stop = min(stop, self.cancelled_at)
        return stop

    def terminal_at(self) -> float:
        """When the batch ends (or will end, as planned now)."""
        if self.cancelled_at is not None:
            return self.cancelled_at
        if self.errors:
            return self.in_progress_at
        if self.expires:
            return self.expires_at
        return self.completed_at

    def status(self, now: float) -> str:
        """The status at ``now``."""
        if self.cancelling_at is not None and self.cancelled_at is not None:
            return "cancelled" if now >= self.cancelled_at else "cancelling"
        if self.errors:
            return "failed" if now >= self.in_progress_at else "validating"
        if self.expires and now >= self.expires_at:
            return "expired"
        if now < self.in_progress_at:
            return "validating"
        if now < self.finalizing_at:
            return "in_progress"
        return "finalizing" if now < self.completed_at else "completed"

    def started(self, now: float) -> bool:
        """Whether the lines began running (validation passed, nothing stopped it before)."""
        return not self.errors and self.in_progress_at <= min(now, self.stop_at)

    def done(self, now: float) -> list[Line]:
        """Lines ended by ``now`` (and before the batch stopped running lines)."""
        if not self.started(now):
            return []
        cut = min(now, self.stop_at)
        return [line for line in self.lines if line.done_at <= cut]


def _stamp(value: float | None, reached: bool = True) -> int | None:
    return int(math.floor(value)) if value is not None and reached else None


def _usage(lines: list[Line]) -> dict[str, Any]:
    """``BatchUsage``: the sum over lines that succeeded."""
    totals = {"input": 0, "cached": 0, "output": 0, "reasoning": 0}
    for line in lines:
        if not line.ok:
            continue
        usage = line.record.usage
        totals["input"] += usage["input_tokens"]
        totals["cached"] += usage["input_tokens_details"]["cached_tokens"]
        totals["output"] += usage["output_tokens"]
        totals["reasoning"] += usage["output_tokens_details"]["reasoning_tokens"]
    return {
        "input_tokens": totals["input"],
        "input_tokens_details": {"cached_tokens": totals["cached"]},
        "output_tokens": totals["output"],
        "output_tokens_details": {"reasoning_tokens": totals["reasoning"]},
        "total_tokens": totals["input"] + totals["output"],
    }


def render(batch: BatchRecord, now: float) -> dict[str, Any]:
    """The ``Batch`` object as of ``now``."""
    status = batch.status(now)
    done = batch.done(now)
    started = batch.started(now)
    cancelling = batch.cancelling_at is not None
    cancel_at = batch.cancelling_at if batch.cancelling_at is not None else math.inf
    finalizing = started and not batch.expires and batch.finalizing_at <= min(now, cancel_at)
    return {
        "id": batch.id,
        "object": "batch",
        "endpoint": batch.endpoint,
        "model": batch.model if started else None,
        "errors": {"object": "list", "data": batch.errors} if status == "failed" else None,
        "input_file_id": batch.input_file_id,
        "completion_window": batch.completion_window,
        "status": status,
        "output_file_id": batch.output_file_id,
        "error_file_id": batch.error_file_id,
        "created_at": _stamp(batch.created_at),
        "in_progress_at": _stamp(batch.in_progress_at, started),
        "expires_at": _stamp(batch.expires_at),
        "finalizing_at": _stamp(batch.finalizing_at, finalizing),
        "completed_at": _stamp(batch.completed_at, status == "completed"),
        "failed_at": _stamp(batch.in_progress_at, status == "failed"),
        "expired_at": _stamp(batch.expires_at, status == "expired"),
        "cancelling_at": _stamp(batch.cancelling_at, cancelling),
        "cancelled_at": _stamp(batch.cancelled_at, status == "cancelled"),
        "request_counts": {
            "total": len(batch.lines) if started else 0,
            "completed": sum(1 for line in done if line.ok),
            "failed": sum(1 for line in done if not line.ok),
        },
        "usage": _usage(done),
        "metadata": batch.metadata,
    }
