"""The Assistants API backend: a thread per our Thread, a run per our Run.

Deprecated by OpenAI in favour of the Responses API but still shipped (``client.beta.threads``);
kept for applications that already have assistants. Differences from Responses that matter here:

- A run has a real ``requires_action`` status with ``required_action.submit_tool_outputs``; the
  outputs go to the *same* run (``submit_tool_outputs``), so the remote id never moves.
- Right after a submission the API keeps reporting ``requires_action`` with the same call ids for
  a moment; the engine's tool round recognises those ids as already answered and never
  submits twice.
- A run waiting for outputs expires at its ``expires_at`` (about ten minutes): we report that
  time so the poll that waits for a manual output wakes for it.
- There are no webhooks for runs: an Assistants run is always tracked by polling.
- The answer is a message in the thread, not part of the run object: seeing a run completed costs
  one more call (listing that run's messages) to fill ``output_text``.

Creates and submissions use the patient client (``get_create_client``): their retry after a lost
answer is not free, unlike a retrieve's.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import openai
from openai.types.beta import Thread
from openai.types.beta.threads import Message
from openai.types.beta.threads import Run as RemoteRun

from ..client import get_client, get_create_client
from ..conf import settings
from ..errors import ThreadBusy
from ..status import RunStatus
from .base import (
    ADOPTED_AT,
    Capabilities,
    OutgoingMessage,
    RemoteState,
    ToolCallRequest,
    ToolOutput,
)
from .common import parse_poll_after, remote_metadata, tool_specs, warm_sdk, when

if TYPE_CHECKING:
    from ..models import Run

# The SDK marks every ``beta.threads`` method deprecated. Silence exactly that message, once, for
# the process: ``warnings.catch_warnings()`` around each call would be the "local" way, but it
# swaps the global filter list and is not thread-safe, and workers run tasks in threads.
warnings.filterwarnings(
    "ignore", message="The Assistants API is deprecated", category=DeprecationWarning
)

#: Used when ``OPENAI_ASSISTANT_ID`` is not set; the simulator accepts any id, OpenAI will not
#: (the run then fails with a clear "not found" error naming this id).
DEFAULT_ASSISTANT_ID = "asst_runs_default"

STATUS_MAP: dict[str, str] = {
    "queued": RunStatus.QUEUED,
    "in_progress": RunStatus.IN_PROGRESS,
    "requires_action": RunStatus.REQUIRES_ACTION,
    "cancelling": RunStatus.CANCELLING,
    "cancelled": RunStatus.CANCELLED,
    "failed": RunStatus.FAILED,
    "completed": RunStatus.COMPLETED,
    "incomplete": RunStatus.INCOMPLETE,
    "expired": RunStatus.EXPIRED,
}

#: A run waiting for a tool and a message with text, parsed by ``warm``.
WARM_RUN: dict[str, Any] = {
    "id": "run_warm",
    "status": "requires_action",
    "required_action": {
        "type": "submit_tool_outputs",
        "submit_tool_outputs": {
            "tool_calls": [
                {"id": "call_warm", "type": "function", "function": {"name": "w", "arguments": ""}}
            ]
        },
    },
    "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    "last_error": None,
}
WARM_MESSAGE: dict[str, Any] = {
    "id": "msg_warm",
    "role": "assistant",
    "content": [{"type": "text", "text": {"value": "", "annotations": []}}],
}

#: Roles a thread message may have; others become additional instructions of the run.
MESSAGE_ROLES = ("user", "assistant")
#: OpenAI's refusal of a second active run on a thread, naming the one it has.
_ACTIVE_RUN = re.compile(r"already has an active run (run_[A-Za-z0-9_-]+)")


def assistant_id() -> str:
    return settings.OPENAI_ASSISTANT_ID or DEFAULT_ASSISTANT_ID


def _error(remote: RemoteRun) -> tuple[str, str]:
    if remote.last_error is not None:
        return str(remote.last_error.code or "error"), remote.last_error.message
    if remote.status == "incomplete":
        reason = remote.incomplete_details.reason if remote.incomplete_details else None
        return "incomplete", f"Run incomplete: {reason or 'no reason given'}"
    if remote.status == "expired":
        return "run_expired", (
            "The run expired at OpenAI before it finished: it passed its expires_at, which "
            "happens when tool outputs are not submitted in time."
        )
    return "", ""


def to_state(
    remote: RemoteRun,
    *,
    output_text: str = "",
    poll_after_ms: int | None = None,
    api_calls: int = 1,
) -> RemoteState:
    """Map one Assistants run object onto a ``RemoteState``."""
    status = STATUS_MAP.get(remote.status, RunStatus.IN_PROGRESS)
    calls: tuple[ToolCallRequest, ...] = ()
    if status == RunStatus.REQUIRES_ACTION and remote.required_action is not None:
        calls = tuple(
            ToolCallRequest(call_id=c.id, name=c.function.name, arguments=c.function.arguments)
            for c in remote.required_action.submit_tool_outputs.tool_calls
        )
    error_code, error_message = _error(remote)
    return RemoteState(
        remote_id=remote.id,
        status=status,
        remote_status=remote.status,
        output_text=output_text,
        usage=remote.usage.model_dump() if remote.usage else None,
        error_code=error_code,
        error_message=error_message,
        remote_completed_at=when(remote.completed_at or remote.failed_at or remote.cancelled_at),
        poll_after_ms=poll_after_ms,
        api_calls=api_calls,
        tool_calls=calls,
        expires_at=when(remote.expires_at),
    )


def _run_options(run: Run) -> dict[str, Any]:
    """The options an Assistants run carries, in its own names (``max_completion_tokens``,
    ``response_format.json_schema``); the others are refused at ``create_run``."""
    kwargs: dict[str, Any] = {}
    if run.response_format:
        fmt = run.response_format
        schema = {"name": fmt["name"], "schema": fmt["schema"], "strict": fmt.get("strict", True)}
        kwargs["response_format"] = {"type": "json_schema", "json_schema": schema}
    if run.reasoning_effort:
        kwargs["reasoning_effort"] = run.reasoning_effort
    if run.max_output_tokens:
        kwargs["max_completion_tokens"] = run.max_output_tokens
    return kwargs


def _output_text(thread_id: str, run_id: str) -> str:
    """The text of the messages the run added to the thread (one list call)."""
    page = get_client().beta.threads.messages.list(
        thread_id=thread_id, run_id=run_id, order="asc", limit=100
    )
    parts = [
        block.text.value
        for message in page.data
        if message.role == "assistant"
        for block in message.content
        if block.type == "text"
    ]
    return "\n\n".join(parts)


class AssistantsBackend:
    name = "assistants"
    capabilities = Capabilities(
        # OpenAI sends no webhooks for Assistants runs: they are always polled.
        webhooks=False,
        remote_waits_for_tool_outputs=True,
        # Outputs go to the same run; a repeated submission is refused, never doubled.
        submit_creates_remote_object=False,
        unsupported_options={
            "completion_window": "the Assistants API has no background windows (2h/8h)",
            "service_tier": "the Assistants API takes no service_tier (no flex processing)",
            "prompt_cache_key": "the Assistants API takes no prompt_cache_key",
            "safety_identifier": "the Assistants API takes no safety_identifier",
        },
    )

    def create_thread(self, run: Run) -> str:
        return get_client().beta.threads.create(metadata={"thread_id": str(run.thread_id)}).id

    def create(
        self, run: Run, thread_remote_id: str, messages: Sequence[OutgoingMessage]
    ) -> RemoteState:
        kwargs: dict[str, Any] = {
            "thread_id": thread_remote_id,
            "assistant_id": assistant_id(),
            "model": run.model,
            "metadata": remote_metadata(run),
        }
        said = [{"role": m.role, "content": m.content} for m in messages if m.role in MESSAGE_ROLES]
        extra = [m.content for m in messages if m.role not in MESSAGE_ROLES]
        if said:
            kwargs["additional_messages"] = said
        if run.instructions:
            kwargs["instructions"] = run.instructions
        if extra:
            kwargs["additional_instructions"] = "\n\n".join(extra)
        tools = tool_specs(run, "assistants")
        if tools:
            kwargs["tools"] = tools
        kwargs.update(_run_options(run))
        try:
            return to_state(get_create_client().beta.threads.runs.create(**kwargs))
        except openai.BadRequestError as exc:
            active = _ACTIVE_RUN.search(exc.message or "")
            if active is None:
                raise
            return self._adopt_or_wait(run, thread_remote_id, active[1])

    def _adopt_or_wait(self, run: Run, thread_remote_id: str, remote_id: str) -> RemoteState:
        """The thread already has an active run. If it is this run's own (an earlier create
        whose answer was lost: a timeout), it is the one we want: take it, so the create happens
        once. Anyone else's: ``ThreadBusy``, retried until the thread is free."""
        try:
            remote = get_client().beta.threads.runs.retrieve(remote_id, thread_id=thread_remote_id)
        except Exception as exc:
            exc.extra_api_calls = 1  # type: ignore[attr-defined]  # counted with the create
            raise
        if (remote.metadata or {}).get("run_id") == str(run.pk):
            # It carried the messages that were unsent then, not any added since (``carried``).
            # OpenAI stamps whole seconds: the messages of that second count as carried (a
            # start's own messages are written in the second it is sent, the usual case).
            state = to_state(remote, api_calls=2)  # the refused create and this read
            return replace(state, extra={**state.extra, ADOPTED_AT: when(remote.created_at + 1)})
        raise ThreadBusy(
            f"thread {thread_remote_id} is running {remote_id}; this run starts after it"
        )

    def retrieve(self, run: Run) -> RemoteState:
        thread_id = run.thread.remote_id
        raw = get_client().beta.threads.runs.with_raw_response.retrieve(
            run_id=run.remote_id, thread_id=thread_id
        )
        remote = raw.parse()
        hint = parse_poll_after(raw.headers)
        if remote.status not in ("completed", "incomplete"):  # an incomplete one keeps its text
            return to_state(remote, poll_after_ms=hint)
        text = _output_text(thread_id, remote.id)
        return to_state(remote, output_text=text, poll_after_ms=hint, api_calls=2)

    def cancel(self, run: Run) -> RemoteState | None:
        if not run.remote_id:
            return None
        remote = get_client().beta.threads.runs.cancel(
            run_id=run.remote_id, thread_id=run.thread.remote_id
        )
        return to_state(remote)

    def submit_tool_outputs(self, run: Run, outputs: Sequence[ToolOutput]) -> RemoteState:
        try:
            remote = get_create_client().beta.threads.runs.submit_tool_outputs(
                run_id=run.remote_id,
                thread_id=run.thread.remote_id,
                tool_outputs=[{"tool_call_id": o.call_id, "output": o.output} for o in outputs],
            )
        except openai.BadRequestError as exc:
            # Refused: our earlier attempt reached the API but its answer was lost (a timeout:
            # "already submitted"), or the run moved on meanwhile ("Runs in status queued do not
            # accept tool outputs", a cancel, an expiry). Either way the run's own state says
            # what happened: read it. Only a run still waiting for these very calls, when the
            # refusal does not say they are in, makes it about our request, and it stands.
            message = exc.message.lower()
            state = self.retrieve(run)
            waiting = {call.call_id for call in state.tool_calls}
            ours = waiting & {o.call_id for o in outputs}
            taken = "already" in message and "submitted" in message
            if state.status == RunStatus.REQUIRES_ACTION and ours and not taken:
                raise
            return replace(state, api_calls=state.api_calls + 1)
        return to_state(remote)

    def warm(self) -> None:
        warm_sdk(
            ("beta.threads.runs", "beta.threads.messages"),
            ((Thread, {}), (RemoteRun, WARM_RUN), (Message, WARM_MESSAGE)),
        )
