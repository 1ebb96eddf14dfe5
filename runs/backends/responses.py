"""The Responses API backend (the default): a conversation per thread, background responses.

A run is one background response (``background=True, store=True``) in the thread's
conversation; messages not yet sent travel as the response's ``input`` and the API appends them
(and the answer) to the conversation, so a run costs one create, not one per message.

Tool calls: a response that completes with ``function_call`` items is our ``requires_action``.
The outputs go back as a *new* background response in the same conversation carrying
``function_call_output`` items (the conversation already holds the calls), and the run's remote id
moves to it: one create per tool round, and polling simply continues on the new response.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.utils import timezone
from openai.types.responses import Response

from ..client import get_client, get_create_client
from ..models import Message, Run, Thread
from ..status import RunStatus
from ..tools import tools_for
from .base import RemoteState, ToolCallRequest, ToolOutput

#: Response status -> run status. Responses have no requires_action status of their own.
STATUS_MAP: dict[str, str] = {
    "queued": RunStatus.QUEUED,
    "in_progress": RunStatus.IN_PROGRESS,
    "completed": RunStatus.COMPLETED,
    "failed": RunStatus.FAILED,
    "cancelled": RunStatus.CANCELLED,
    "incomplete": RunStatus.INCOMPLETE,
}

#: OpenAI accepts at most 16 metadata pairs of strings (values up to 512 characters).
MAX_METADATA_KEYS = 16


def remote_metadata(run: Run) -> dict[str, str]:
    """Our run id plus the caller's metadata, as the strings OpenAI requires."""
    meta = {"run_id": str(run.pk)}
    for key, value in (run.metadata or {}).items():
        if len(meta) >= MAX_METADATA_KEYS:
            break
        meta.setdefault(str(key)[:64], str(value)[:512])
    return meta


def to_state(
    response: Response, *, poll_after_ms: int | None = None, api_calls: int = 1
) -> RemoteState:
    """Map one Response object onto a ``RemoteState``."""
    status = STATUS_MAP.get(response.status or "", RunStatus.IN_PROGRESS)
    calls = tuple(
        ToolCallRequest(call_id=item.call_id, name=item.name, arguments=item.arguments)
        for item in response.output or []
        if item.type == "function_call"
    )
    if status == RunStatus.COMPLETED and calls:
        # The model stopped to ask for tools: the run is not over, it owes outputs.
        status = RunStatus.REQUIRES_ACTION
    error_code = error_message = ""
    if response.error is not None:
        error_code, error_message = str(response.error.code or "error"), response.error.message
    elif response.status == "incomplete":
        reason = response.incomplete_details.reason if response.incomplete_details else None
        error_code = "incomplete"
        error_message = f"Response incomplete: {reason or 'no reason given'}"
    completed = getattr(response, "completed_at", None)
    return RemoteState(
        remote_id=response.id,
        status=status,
        remote_status=response.status or "",
        output_text=response.output_text if status == RunStatus.COMPLETED else "",
        usage=response.usage.model_dump() if response.usage else None,
        error_code=error_code,
        error_message=error_message,
        remote_completed_at=datetime.fromtimestamp(completed, UTC) if completed else None,
        poll_after_ms=poll_after_ms,
        api_calls=api_calls,
        tool_calls=calls if status == RunStatus.REQUIRES_ACTION else (),
    )


def _ensure_conversation(thread: Thread) -> str:
    """The thread's conversation id, creating the conversation on first use."""
    if thread.remote_id:
        return thread.remote_id
    conversation = get_client().conversations.create(metadata={"thread_id": str(thread.pk)})
    # Only set it if still empty: two runs of one thread starting at once keep one conversation.
    Thread.objects.filter(pk=thread.pk, remote_id="").update(remote_id=conversation.id)
    thread.refresh_from_db(fields=["remote_id"])
    return thread.remote_id


def _unsent_input(thread: Thread) -> tuple[list[dict[str, Any]], list[int]]:
    messages = list(Message.objects.filter(thread=thread, sent_at__isnull=True))
    items = [{"type": "message", "role": m.role, "content": m.content} for m in messages]
    return items, [m.pk for m in messages]


def _parse_poll_after(headers: Any) -> int | None:
    value = headers.get("openai-poll-after-ms")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class ResponsesBackend:
    name = "responses"

    def create(self, run: Run) -> RemoteState:
        client = get_create_client()
        had_conversation = bool(run.thread.remote_id)
        conversation_id = _ensure_conversation(run.thread)
        items, message_ids = _unsent_input(run.thread)
        kwargs: dict[str, Any] = {
            "model": run.model,
            "conversation": conversation_id,
            "background": True,
            "store": True,
            "metadata": remote_metadata(run),
            "input": items,
        }
        kwargs.update(_tools_and_instructions(run))
        response = client.responses.create(**kwargs)
        with transaction.atomic():
            Message.objects.filter(pk__in=message_ids).update(sent_at=timezone.now())
        return to_state(response, api_calls=1 if had_conversation else 2)

    def retrieve(self, run: Run) -> RemoteState:
        raw = get_client().responses.with_raw_response.retrieve(run.remote_id)
        return to_state(raw.parse(), poll_after_ms=_parse_poll_after(raw.headers))

    def cancel(self, run: Run) -> RemoteState | None:
        if not run.remote_id:
            return None
        return to_state(get_client().responses.cancel(run.remote_id))

    def submit_tool_outputs(self, run: Run, outputs: Sequence[ToolOutput]) -> RemoteState:
        """Continue in the conversation with a new background response carrying the outputs."""
        response = get_create_client().responses.create(
            model=run.model,
            conversation=run.thread.remote_id,
            background=True,
            store=True,
            metadata=remote_metadata(run),
            input=[
                {"type": "function_call_output", "call_id": o.call_id, "output": o.output}
                for o in outputs
            ],
            **_tools_and_instructions(run),
        )
        return to_state(response)


def _tools_and_instructions(run: Run) -> dict[str, Any]:
    """What every response of a run repeats: a response does not inherit them from the last."""
    kwargs: dict[str, Any] = {}
    if run.instructions:
        kwargs["instructions"] = run.instructions
    tools = tools_for(run.tools or [])
    if tools:
        kwargs["tools"] = [t.responses_spec() for t in tools]
    return kwargs
