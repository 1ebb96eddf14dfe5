"""The interface every OpenAI API backend implements, and the lookup by name.

A backend translates between our ``Run`` and one OpenAI API; it never changes a status itself
(the state machine does) and never sleeps or retries (the tasks do, with countdowns).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..models import Run


@dataclass(frozen=True)
class ToolCallRequest:
    """One function call the model asked for, as the API sent it (arguments may be bad JSON)."""

    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ToolOutput:
    """Our answer to one call."""

    call_id: str
    output: str


@dataclass(frozen=True)
class RemoteState:
    """What one API answer told us about a run, already mapped onto our statuses."""

    remote_id: str
    status: str
    remote_status: str
    output_text: str = ""
    usage: dict[str, Any] | None = None
    error_code: str = ""
    error_message: str = ""
    remote_completed_at: datetime | None = None
    #: The server's ``openai-poll-after-ms`` hint, when it sent one.
    poll_after_ms: int | None = None
    #: API calls this answer cost (a first create also creates the conversation or thread).
    api_calls: int = 1
    #: With ``status == requires_action``: the calls whose outputs the API waits for.
    tool_calls: tuple[ToolCallRequest, ...] = ()
    #: When the API itself expires the run (Assistants ``expires_at``); None when it does not.
    expires_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    """One OpenAI API. Each method makes exactly the API calls it names, no retries."""

    name: str

    def create(self, run: Run) -> RemoteState:
        """Create the run remotely (and its thread / conversation if needed)."""
        ...

    def retrieve(self, run: Run) -> RemoteState:
        """One retrieve of the run's current remote object."""
        ...

    def cancel(self, run: Run) -> RemoteState | None:
        """Ask the server to cancel; None when there is nothing remote to cancel."""
        ...

    def submit_tool_outputs(self, run: Run, outputs: Sequence[ToolOutput]) -> RemoteState:
        """Send one round's outputs; the answer describes the run's (possibly new) remote object.

        Assistants: ``submit_tool_outputs`` on the run. Responses: a new background response in
        the conversation carrying ``function_call_output`` items (the remote id moves to it).
        """
        ...


def get_backend(name: str) -> Backend:
    """The backend for ``name``; unknown names are a configuration error, said clearly."""
    if name == "responses":
        from .responses import ResponsesBackend

        return ResponsesBackend()
    if name == "assistants":
        from .assistants import AssistantsBackend

        return AssistantsBackend()
    raise ValueError(f"unknown runs backend {name!r} (expected 'responses' or 'assistants')")
