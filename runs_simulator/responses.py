"""The Response record and its JSON rendering.

Why: a response's visible state is derived, not stored. The record holds the request,
the planned timeline and the planned terminal output; ``render`` computes the status
from the clock and emits the full ``Response`` object (schema ``Response``), with
``output``/``usage``/``error``/``incomplete_details``/``completed_at`` filled only when
the real API fills them. The options of the request (``service_tier``, ``reasoning``, ``text``,
``max_output_tokens``...) are echoed as the API echoes them: validated and normalized.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .items import Item
from .response_options import Options
from .timeline import TERMINAL_RESPONSE, Timeline

FAILED_MESSAGE = "The model failed to generate a response. (simulated failure)"


@dataclass
class ResponseRecord:
    """One response: request echo fields, timeline and planned outcome payload."""

    id: str
    timeline: Timeline
    model: str
    background: bool
    store: bool
    metadata: dict[str, str]
    instructions: Any
    tools: list[dict[str, Any]]
    tool_choice: Any
    extras: dict[str, Any]
    input_items: list[Item]
    prompt_text: str
    output_items: list[Item]
    usage: dict[str, Any]
    options: Options = field(default_factory=Options)
    conversation_id: str | None = None
    previous_response_id: str | None = None
    chain_id: str | None = None
    error_code: str = "server_error"
    cancelled_at: float | None = None
    webhook_token: int = 0
    appended: bool = False
    counts: dict[str, int] = field(default_factory=dict)

    def status(self, now: float) -> str:
        """Lazily computed status (client cancellation wins from the moment it happened)."""
        if self.cancelled_at is not None and now >= self.cancelled_at:
            return "cancelled"
        return self.timeline.status_at(now)

    def terminal_at(self, now: float) -> float | None:
        """Epoch seconds the terminal status began, or ``None`` while still running."""
        if self.cancelled_at is not None and now >= self.cancelled_at:
            return self.cancelled_at
        if now >= self.timeline.terminal_at:
            return self.timeline.terminal_at
        return None

    def is_terminal(self, now: float) -> bool:
        """Whether the response has reached a terminal status."""
        return self.status(now) in TERMINAL_RESPONSE

    def visible_output(self, now: float) -> list[Item]:
        """Output items as the API shows them for the current status."""
        status = self.status(now)
        if status in ("completed", "incomplete"):
            return self.output_items
        return []


def render(record: ResponseRecord, now: float) -> dict[str, Any]:
    """The full ``Response`` JSON object as of ``now``."""
    status = record.status(now)
    terminal_at = record.terminal_at(now)
    output = record.visible_output(now)
    payload: dict[str, Any] = {
        "id": record.id,
        "object": "response",
        "created_at": int(record.timeline.created),
        "status": status,
        "background": record.background,
        "completed_at": int(terminal_at) if status == "completed" and terminal_at else None,
        "conversation": {"id": record.conversation_id} if record.conversation_id else None,
        "error": None,
        "incomplete_details": None,
        "instructions": record.instructions,
        "max_output_tokens": record.options.max_output_tokens,
        "max_tool_calls": record.extras.get("max_tool_calls"),
        "model": record.model,
        "output": output,
        "parallel_tool_calls": record.extras.get("parallel_tool_calls", True),
        "previous_response_id": record.previous_response_id,
        "prompt_cache_key": record.options.prompt_cache_key,
        "reasoning": {"effort": record.options.effort, "summary": record.options.summary},
        "safety_identifier": record.options.safety_identifier,
        "service_tier": record.options.service_tier,
        "store": record.store,
        "temperature": record.extras.get("temperature", 1.0),
        "text": record.options.text,
        "tool_choice": record.tool_choice,
        "tools": record.tools,
        "top_logprobs": 0,
        "top_p": record.extras.get("top_p", 1.0),
        "truncation": record.extras.get("truncation", "disabled"),
        "metadata": record.metadata,
    }
    if status in ("completed", "incomplete"):
        # The schema types ``usage`` as a non-nullable object: absent until there is one.
        payload["usage"] = record.usage
    if status == "failed":
        payload["error"] = {"code": record.error_code, "message": FAILED_MESSAGE}
    elif status == "incomplete":
        payload["incomplete_details"] = {"reason": "max_output_tokens"}
    return payload
