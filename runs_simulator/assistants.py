"""Threads, messages and runs, with a lazily advanced run state machine.

Why a state machine (and not a fixed timeline like Responses): a run's future depends on
the client. It waits in ``requires_action`` until tool outputs arrive (or it expires), a
cancel goes through ``cancelling`` first, and after outputs are submitted the API keeps
reporting ``requires_action`` for a moment. ``advance(now)`` replays those rules up to
``now`` on every read, so there is still no background loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .tool_scenario import ToolPlan

RUN_OUTCOMES = ("completed", "failed", "incomplete", "cancelled", "expired")
TERMINAL_RUN = frozenset({"completed", "failed", "incomplete", "cancelled", "expired"})
FAILED_MESSAGE = "Sorry, something went wrong. (simulated failure)"


@dataclass
class ThreadRecord:
    """A thread: its messages (oldest first, id-indexed) and its runs."""

    id: str
    created: float
    metadata: dict[str, str]
    tool_resources: dict[str, Any] | None
    messages: list[dict[str, Any]] = field(default_factory=list)
    positions: dict[str, int] = field(default_factory=dict)
    run_ids: list[str] = field(default_factory=list)

    def add_message(self, message: dict[str, Any]) -> None:
        """Append a rendered ``MessageObject``."""
        self.positions[message["id"]] = len(self.messages)
        self.messages.append(message)

    def render(self) -> dict[str, Any]:
        """The ``ThreadObject`` shape."""
        return {
            "id": self.id,
            "object": "thread",
            "created_at": int(self.created),
            "metadata": self.metadata,
            "tool_resources": self.tool_resources,
        }


# Kept for the store's type hints: messages are stored rendered, as dicts.
MessageRecord = dict[str, Any]


def message_payload(
    message_id: str,
    thread_id: str,
    role: str,
    text: str,
    created: float,
    *,
    assistant_id: str | None = None,
    run_id: str | None = None,
    metadata: dict[str, str] | None = None,
    attachments: list[Any] | None = None,
) -> dict[str, Any]:
    """A ``MessageObject`` with a single text part."""
    return {
        "id": message_id,
        "object": "thread.message",
        "created_at": int(created),
        "thread_id": thread_id,
        "status": "completed",
        "incomplete_details": None,
        "completed_at": int(created) if role == "assistant" else None,
        "incomplete_at": None,
        "role": role,
        "content": [{"type": "text", "text": {"value": text, "annotations": []}}],
        "assistant_id": assistant_id,
        "run_id": run_id,
        "attachments": attachments or [],
        "metadata": metadata or {},
    }


@dataclass
class RunRecord:
    """A run; ``status`` and the timestamps are brought up to date by ``advance``."""

    id: str
    thread_id: str
    assistant_id: str
    model: str
    instructions: str
    tools: list[dict[str, Any]]
    metadata: dict[str, str]
    created: float
    queue_s: float
    segment_s: float
    outcome: str
    plan: ToolPlan | None
    expires_at: float
    submit_lag_s: float
    cancel_lag_s: float
    prompt_text: str
    new_call_id: Callable[[], str] = field(repr=False, default=lambda: "call_unset")
    status: str = "queued"
    segment_start: float = 0.0
    first_segment: bool = True
    rounds_done: int = 0
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    awaiting_outputs: bool = False
    action_since: float | None = None
    lag_until: float | None = None
    submitted_ids: set[str] = field(default_factory=set)
    cancel_requested_at: float | None = None
    started_at: float | None = None
    terminal_at: float | None = None
    message_added: bool = False

    def __post_init__(self) -> None:
        self.segment_start = self.created

    def _finish(self, status: str, at: float) -> None:
        self.status = status
        self.terminal_at = at
        self.awaiting_outputs = False

    def advance(self, now: float) -> None:
        """Apply every transition due by ``now`` (idempotent; cheap when nothing is due)."""
        if self.status in TERMINAL_RUN:
            return
        if self.cancel_requested_at is not None:
            done_at = self.cancel_requested_at + self.cancel_lag_s
            if now >= done_at:
                self._finish("cancelled", done_at)
            else:
                self.status = "cancelling"
            return
        if self.awaiting_outputs:
            self._check_expiry(now)
            return
        if self.lag_until is not None and now < self.lag_until:
            self.status = "requires_action"
            return
        queue = self.queue_s if self.first_segment else 0.0
        work_from = self.segment_start + queue
        segment_end = self.segment_start + max(self.segment_s, queue)
        if now < work_from:
            self.status = "queued"
            return
        if self.started_at is None:
            self.started_at = work_from
        if now < segment_end:
            self.status = "in_progress"
            return
        if self.plan is not None and self.rounds_done < self.plan.rounds:
            self.tool_calls = [
                {
                    "id": self.new_call_id(),
                    "type": "function",
                    "function": {"name": self.plan.name, "arguments": self.plan.arguments},
                }
            ]
            self.awaiting_outputs = True
            self.action_since = segment_end
            self.status = "requires_action"
            self._check_expiry(now)
            return
        self._finish(self.outcome, segment_end)

    def _check_expiry(self, now: float) -> None:
        if now >= self.expires_at:
            self._finish("expired", max(self.expires_at, self.action_since or self.expires_at))
        else:
            self.status = "requires_action"

    def accept_outputs(self, now: float) -> None:
        """Record a valid submission: lag in ``requires_action``, then the next segment."""
        self.submitted_ids.update(call["id"] for call in self.tool_calls)
        self.rounds_done += 1
        self.awaiting_outputs = False
        self.lag_until = now + self.submit_lag_s
        self.segment_start = self.lag_until
        self.first_segment = False

    def render(self) -> dict[str, Any]:
        """The ``RunObject`` JSON as of the last ``advance``."""
        status = self.status
        terminal = status in TERMINAL_RUN
        at = int(self.terminal_at) if self.terminal_at is not None else None
        required = None
        if status == "requires_action":
            required = {
                "type": "submit_tool_outputs",
                "submit_tool_outputs": {"tool_calls": self.tool_calls},
            }
        prompt_tokens = max(1, (len(self.prompt_text) + 3) // 4) + 20
        completion_tokens = 12 + 8 * self.rounds_done
        return {
            "id": self.id,
            "object": "thread.run",
            "created_at": int(self.created),
            "thread_id": self.thread_id,
            "assistant_id": self.assistant_id,
            "status": status,
            "required_action": required,
            "last_error": (
                {"code": "server_error", "message": FAILED_MESSAGE} if status == "failed" else None
            ),
            "expires_at": None if terminal else math.ceil(self.expires_at),
            "started_at": int(self.started_at) if self.started_at is not None else None,
            "cancelled_at": at if status == "cancelled" else None,
            "failed_at": at if status == "failed" else None,
            "completed_at": at if status == "completed" else None,
            "incomplete_details": (
                {"reason": "max_completion_tokens"} if status == "incomplete" else None
            ),
            "model": self.model,
            "instructions": self.instructions,
            "tools": self.tools,
            "metadata": self.metadata,
            "usage": (
                {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                }
                if terminal
                else None
            ),
            "temperature": 1.0,
            "top_p": 1.0,
            "max_prompt_tokens": None,
            "max_completion_tokens": None,
            "truncation_strategy": {"type": "auto", "last_messages": None},
            "tool_choice": "auto",
            "parallel_tool_calls": True,
            "response_format": "auto",
        }
