"""A run's story for its admin page: status changes and tool calls in time order, then the next
poll (when it is due and why) while the run is active."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..models import Run
from ..schedule import describe


@dataclass(frozen=True)
class Entry:
    at: datetime
    #: Seconds since the run was created, for reading latencies at a glance.
    offset_s: float
    kind: str  # "status", "tool" or "next" (the poll to come)
    title: str
    source: str = ""
    status: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


def timeline(run: Run) -> list[Entry]:
    """Status changes (``RunEvent``) and tool calls merged by time: two queries."""

    def offset(at: datetime) -> float:
        return (at - run.created_at).total_seconds()

    entries = [
        Entry(
            at=event.at,
            offset_s=offset(event.at),
            kind="status",
            title=f"{event.from_status} → {event.to_status}",
            source=event.source,
            status=event.to_status,
            detail=event.detail or {},
        )
        for event in run.events.all()
    ]
    for call in run.tool_calls.all():
        detail: dict[str, Any] = {"call_id": call.call_id, "arguments": call.arguments}
        if call.output:
            detail["output"] = call.output
        if call.error:
            detail["error"] = call.error
        entries.append(
            Entry(
                at=call.created_at,
                offset_s=offset(call.created_at),
                kind="tool",
                title=f"{call.name}() round {call.round}: {call.get_state_display()}",
                source="tool",
                detail=detail,
            )
        )
    entries.sort(key=lambda e: e.at)
    if run.is_active and run.next_poll_at is not None:
        entries.append(
            Entry(
                at=run.next_poll_at,
                offset_s=offset(run.next_poll_at),
                kind="next",
                title="next poll",
                source="schedule",
                detail={"why": describe(run)},
            )
        )
    return entries
