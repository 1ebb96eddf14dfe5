"""The interface every OpenAI API backend implements, and the values it answers with.

A backend translates between our rows and one OpenAI API. It makes exactly the API calls a
method names and reports what the API said: it never writes a row, never changes a status (the
engine and the state machine do), and never sleeps or retries (the engine does, with countdowns).
What differs between APIs and matters to the engine is declared as ``Capabilities`` rather than
tested by name elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
class OutgoingMessage:
    """A message of the thread that no run has carried to OpenAI yet."""

    role: str
    content: str


#: ``RemoteState.extra`` key set by a create that took over the run an earlier create of the same
#: run made (its answer lost): when OpenAI created it. That run carried the messages unsent then,
#: not any added since, so a start marks sent only those created before it.
ADOPTED_AT = "adopted_created_at"


def carried(created_at: datetime, state: RemoteState) -> bool:
    """Whether a message created at ``created_at`` went to OpenAI with the run ``state`` reads."""
    adopted = state.extra.get(ADOPTED_AT)
    return adopted is None or created_at <= adopted


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
    #: API calls this answer cost (Assistants reads a completed run's messages with it; a create
    #: that took over the run of its lost earlier attempt read that run).
    api_calls: int = 1
    #: With ``status == requires_action``: the calls whose outputs the API waits for.
    tool_calls: tuple[ToolCallRequest, ...] = ()
    #: When the API itself expires the run (Assistants ``expires_at``); None when it does not.
    expires_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Capabilities:
    """What the engine and the services must know about an API, declared once per backend."""

    #: OpenAI sends webhooks for this API's runs (else a run is always polled).
    webhooks: bool
    #: A run waiting for tool outputs is still open remotely (and must be cancelled when we give
    #: up on it); False where the waiting remote object has already ended (Responses).
    remote_waits_for_tool_outputs: bool
    #: Submitting tool outputs creates a new remote object: a submit whose answer was lost may,
    #: when repeated, create a second one (like a lost create). False where a repeat is refused.
    submit_creates_remote_object: bool
    #: Run options this API cannot carry, with why: ``create_run`` refuses a run that sets one
    #: (runs/options.py) rather than send it without (a window or tier silently dropped would
    #: bill at another price than the caller chose).
    unsupported_options: Mapping[str, str] = field(default_factory=dict)


class Backend(Protocol):
    """One OpenAI API. Each method makes exactly the API calls it names, no retries."""

    name: str
    capabilities: Capabilities

    def create_thread(self, run: Run) -> str:
        """Create the remote conversation (Responses) or thread (Assistants); its id."""
        ...

    def create(
        self, run: Run, thread_remote_id: str, messages: Sequence[OutgoingMessage]
    ) -> RemoteState:
        """Create the run remotely in ``thread_remote_id``, carrying the unsent ``messages``."""
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

    def warm(self) -> None:
        """Load now, with no API call, what this API's first call would load: the SDK's lazily
        imported resources and the schemas of the models its answers are parsed into.

        Why: that first load costs a fraction of a second of CPU under the GIL, and a worker that
        pays it in its first tasks stalls every other thread of the process, in the burst of
        starts where a slot matters most (docs/celery.md, "Worker start-up").
        """
        ...
