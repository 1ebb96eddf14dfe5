"""The Responses API backend (the default): a conversation per thread, background responses.

A run is one background response (``background=True, store=True``) in the thread's
conversation; messages not yet sent travel as the response's ``input`` and the API appends them
(and the answer) to the conversation, so a run costs one create, not one per message.

Tool calls: a response that completes with ``function_call`` items is our ``requires_action``.
The outputs go back as a *new* background response in the same conversation carrying
``function_call_output`` items (the conversation already holds the calls), and the run's remote id
moves to it: one create per tool round, and polling simply continues on the new response.

Run options (a 2h/8h window, the service tier, structured output, reasoning effort...) travel
with every response of the run, the tool rounds' included: ``common.request_options``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from openai.types.conversations import Conversation
from openai.types.responses import Response

from ..client import get_client, get_create_client
from ..status import RunStatus
from .base import Capabilities, OutgoingMessage, RemoteState, ToolCallRequest, ToolOutput
from .common import (
    parse_poll_after,
    remote_metadata,
    request_options,
    tool_specs,
    warm_sdk,
    when,
)

if TYPE_CHECKING:
    from ..models import Run

#: Response status -> run status. Responses have no requires_action status of their own.
STATUS_MAP: dict[str, str] = {
    "queued": RunStatus.QUEUED,
    "in_progress": RunStatus.IN_PROGRESS,
    "completed": RunStatus.COMPLETED,
    "failed": RunStatus.FAILED,
    "cancelled": RunStatus.CANCELLED,
    "incomplete": RunStatus.INCOMPLETE,
}


#: The statuses whose answer text is kept on the run.
_WITH_TEXT = (RunStatus.COMPLETED, RunStatus.INCOMPLETE)


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
    return RemoteState(
        remote_id=response.id,
        status=status,
        remote_status=response.status or "",
        # An incomplete answer (cut off at max_output_tokens, say) keeps what was written: paid
        # for, and often what the caller needs to see why.
        output_text=response.output_text if status in _WITH_TEXT else "",
        usage=response.usage.model_dump() if response.usage else None,
        error_code=error_code,
        error_message=error_message,
        remote_completed_at=when(getattr(response, "completed_at", None)),
        poll_after_ms=poll_after_ms,
        api_calls=api_calls,
        tool_calls=calls if status == RunStatus.REQUIRES_ACTION else (),
    )


#: A completed answer holding one item of each kind we read, parsed by ``warm``.
WARM_ANSWER: dict[str, Any] = {
    "id": "resp_warm",
    "object": "response",
    "status": "completed",
    "output": [
        {
            "type": "message",
            "id": "msg_warm",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "", "annotations": []}],
        },
        {
            "type": "function_call",
            "id": "fc_warm",
            "call_id": "call_warm",
            "name": "warm",
            "arguments": "{}",
            "status": "completed",
        },
    ],
    "usage": {
        "input_tokens": 0,
        "output_tokens": 0,
        "total_tokens": 0,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    },
    "error": None,
}

#: The statuses of a response that has not ended, and so carries no answer yet.
NOT_YET = ("queued", "in_progress")


def not_yet(answer: object, poll_after_ms: int | None) -> RemoteState | None:
    """The ``RemoteState`` of an answer that only says "not yet" (queued or in progress, with no
    error and no usage), read from its JSON; None for any other answer, which ``to_state`` reads.

    Why: most polls get this answer, and so does a create. The SDK builds its ``Response`` model
    for it recursively (output, tools, text format, reasoning) for a status and an id: 250 us of
    CPU per answer against 10 us here, a few per cent of a poll task (docs/bench/README.md, "A
    poll's "not yet" answer"). Everything else ``to_state`` would read from such an answer is
    empty, so both agree on it (tests/test_responses_backend.py).
    """
    if not isinstance(answer, dict) or not isinstance(answer.get("id"), str):
        return None
    status = answer.get("status")
    if status not in NOT_YET or answer.get("error") is not None or answer.get("usage") is not None:
        return None
    return RemoteState(
        remote_id=answer["id"],
        status=STATUS_MAP[status],
        remote_status=status,
        remote_completed_at=when(answer.get("completed_at")),
        poll_after_ms=poll_after_ms,
    )


def read_answer(raw: Any, *, poll_after_ms: int | None = None) -> RemoteState:
    """The ``RemoteState`` of one raw answer (the SDK's ``with_raw_response``): a "not yet" read
    from its JSON (``not_yet``), anything else through the SDK's ``Response`` model."""
    try:
        answer = raw.http_response.json()
    except ValueError:  # not JSON: the SDK's own parse says what it makes of it
        answer = None
    return not_yet(answer, poll_after_ms) or to_state(raw.parse(), poll_after_ms=poll_after_ms)


class ResponsesBackend:
    name = "responses"
    capabilities = Capabilities(
        webhooks=True,
        # A response that asks for tools has *completed*: nothing waits remotely.
        remote_waits_for_tool_outputs=False,
        # The outputs travel in a new response: a repeated submit can create a second one.
        submit_creates_remote_object=True,
    )

    def create_thread(self, run: Run) -> str:
        return get_client().conversations.create(metadata={"thread_id": str(run.thread_id)}).id

    def create(
        self, run: Run, thread_remote_id: str, messages: Sequence[OutgoingMessage]
    ) -> RemoteState:
        items = [{"type": "message", "role": m.role, "content": m.content} for m in messages]
        return create_response(response_body(run, thread_remote_id, items))

    def retrieve(self, run: Run) -> RemoteState:
        raw = get_client().responses.with_raw_response.retrieve(run.remote_id)
        return read_answer(raw, poll_after_ms=parse_poll_after(raw.headers))

    def cancel(self, run: Run) -> RemoteState | None:
        if not run.remote_id:
            return None
        return to_state(get_client().responses.cancel(run.remote_id))

    def submit_tool_outputs(self, run: Run, outputs: Sequence[ToolOutput]) -> RemoteState:
        """Continue in the conversation with a new background response carrying the outputs."""
        items = [
            {"type": "function_call_output", "call_id": o.call_id, "output": o.output}
            for o in outputs
        ]
        return create_response(response_body(run, run.thread.remote_id, items))

    def warm(self) -> None:
        warm_sdk(("responses", "conversations"), ((Response, WARM_ANSWER), (Conversation, {})))


def response_body(run: Run, conversation: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """The body of one background response of ``run`` in ``conversation`` with these input items.

    Every response of a run repeats the instructions, tools and options: a response does not
    inherit them from the last one.
    """
    body: dict[str, Any] = {
        "model": run.model,
        "conversation": conversation,
        "background": True,
        "store": True,
        "metadata": remote_metadata(run),
        "input": items,
    }
    if run.instructions:
        body["instructions"] = run.instructions
    tools = tool_specs(run, "responses")
    if tools:
        body["tools"] = tools
    body.update(request_options(run, background=True))
    return body


def create_response(body: dict[str, Any]) -> RemoteState:
    """``POST /responses`` with ``body`` through the SDK, and the state it answers.

    The body goes as ``extra_body``, which the SDK sends as it is, and not as typed keyword
    arguments: those the SDK first walks against its ``ResponseCreateParams`` schema, every one of
    its keys and each input item against every member of the input union, to rename aliases and
    format dates. Our body is plain JSON with neither, so the walk changes nothing, and it cost
    0.5 ms of CPU per create, two thirds of the SDK's share of a create (docs/bench/README.md,
    "The SDK's walk of a create's parameters"). Retries, timeouts, headers and errors are the
    SDK's as before.
    """
    raw = get_create_client().responses.with_raw_response.create(extra_body=body)
    return read_answer(raw)
