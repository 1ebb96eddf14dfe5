"""Request and response shapes of the JSON API (pydantic, through django-ninja).

The limits here mirror the services' validation, so most bad input is a 422 that the schema
itself explains; whatever only the services can judge (a thread of another backend, a cancel of
a run that already ended) is a 400 or 409 with a message. Strings refuse NUL and lone surrogates:
PostgreSQL cannot store them, and a 500 is never the answer to bad input.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from ninja import Schema
from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field

from .. import options, storable
from ..arguments import MAX_METADATA_KEYS
from ..models import ToolCall
from ..status import Backend, RunStatus, Strategy
from ..tool_output import told_the_model

#: Largest id a ``bigint`` primary key can hold: larger ids are a 422, not a database error.
MAX_ID = 2**63 - 1


def _storable(value: str) -> str:
    if problem := storable.text_problem(value):
        raise ValueError(problem)
    return value


def _aware_utc(value: datetime) -> datetime:
    """Naive times are UTC; times that cannot be expressed in UTC are refused (422)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("date out of range") from None


def usd(value: Any) -> str | None:
    """USD as a plain decimal string (``"0.00000050"``): ``str(Decimal)`` would give ``"5.0E-7"``
    or ``"0E-8"``, which a client parsing money must not have to expect."""
    return None if value is None else format(Decimal(value), "f")


Text = Annotated[str, AfterValidator(_storable)]
#: A cost in a response: ``usd`` applied to whatever the row or the sum holds.
Usd = Annotated[str | None, BeforeValidator(usd)]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
MetaKey = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_storable)]
MetaValue = Annotated[str, Field(max_length=512), AfterValidator(_storable)]
Metadata = Annotated[dict[MetaKey, MetaValue], Field(max_length=MAX_METADATA_KEYS)]
UtcDatetime = Annotated[datetime, AfterValidator(_aware_utc)]

BackendName = Literal[tuple(Backend.values)]  # type: ignore[valid-type]
StrategyName = Literal[tuple(Strategy.values)]  # type: ignore[valid-type]
StatusName = Literal[tuple(RunStatus.values)]  # type: ignore[valid-type]
Role = Literal["user", "assistant", "system", "developer"]
WindowName = Literal[options.WINDOWS]  # type: ignore[valid-type]
TierName = Literal[options.SERVICE_TIERS]  # type: ignore[valid-type]
EffortName = Literal[options.REASONING_EFFORTS]  # type: ignore[valid-type]
OptionKey = Annotated[str, Field(max_length=options.MAX_KEY_LENGTH), AfterValidator(_storable)]


class _In(Schema):
    model_config = ConfigDict(extra="forbid")


class Error(Schema):
    detail: Any = Field(description="What was wrong: a message, or the list of invalid fields.")


# --- threads and messages ------------------------------------------------------------------------


class ThreadIn(_In):
    backend: BackendName | None = Field(None, description="Default: RUNS_BACKEND.")
    metadata: Metadata | None = None


class MessageIn(_In):
    content: Annotated[Text, Field(min_length=1, max_length=100_000, pattern=r"\S")]
    role: Role = "user"


class MessageOut(Schema):
    id: int
    thread_id: int
    role: str
    content: str
    sent_at: datetime | None
    created_at: datetime


class ThreadOut(Schema):
    id: int
    backend: str
    remote_id: str
    metadata: dict[str, Any]
    created_at: datetime


# --- runs ---------------------------------------------------------------------------------------


class RunIn(_In):
    """Create a run and start it. Give ``text`` (a new thread), or ``thread_id`` (its unsent
    messages are the input), or both (``text`` is added to the thread first)."""

    text: Annotated[Text, Field(max_length=100_000)] | None = None
    thread_id: Id | None = None
    model: Annotated[Text, Field(min_length=1, max_length=64)] | None = None
    instructions: Annotated[Text, Field(max_length=100_000)] = ""
    metadata: Metadata | None = None
    backend: BackendName | None = None
    strategy: StrategyName | None = None
    tools: Annotated[list[Annotated[Text, Field(max_length=128)]], Field(max_length=64)] = []
    deadline_s: Annotated[float, Field(gt=0, le=7 * 24 * 3600)] | None = Field(
        None,
        description="Seconds until the run expires and is cancelled. Default: RUNS_DEADLINE_S, "
        "or for a 2h/8h window the window plus RUNS_WINDOW_GRACE_S (never shorter than it).",
    )
    # Run options (docs/api.md, "Run options"); combinations are checked by the service (400).
    completion_window: WindowName | None = Field(
        None, description="`2h`/`8h`: discounted background windows (standard processing only)."
    )
    service_tier: TierName | None = Field(None, description="E.g. `flex`. Default: not sent.")
    response_format: dict[str, Any] | None = Field(
        None,
        description="Structured output: a JSON schema of an object, or "
        "`{name, schema, strict}`. The parsed output is `parsed_output`.",
    )
    reasoning_effort: EffortName | None = None
    max_output_tokens: (
        Annotated[int, Field(ge=options.MIN_OUTPUT_TOKENS, le=options.MAX_OUTPUT_TOKENS)] | None
    ) = None
    prompt_cache_key: OptionKey | None = None
    safety_identifier: OptionKey | None = None


class RunOut(Schema):
    id: int
    thread_id: int
    batch_id: int | None = Field(description="The batch that sends it (mode `batch`), if any.")
    status: str
    terminal: bool
    backend: str
    strategy: str
    model: str
    remote_id: str
    metadata: dict[str, Any]
    tools: list[Any]
    output_text: str
    usage: dict[str, Any] | None
    last_error_code: str
    last_error: str
    api_calls: int
    polls: int
    webhook_events: int
    created_at: datetime
    submitted_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    deadline_at: datetime | None
    next_poll_at: datetime | None
    completion_window: str
    service_tier: str
    mode: str
    response_format: dict[str, Any] | None
    reasoning_effort: str
    max_output_tokens: int | None
    prompt_cache_key: str
    safety_identifier: str
    parsed_output: Any = Field(description="A structured run's output, parsed and validated.")
    cost: str | None = Field(
        description="USD as a decimal string, from usage and the price table; null when the "
        "model is not in the table or the run has no usage."
    )

    @staticmethod
    def resolve_terminal(obj: Any) -> bool:
        return bool(obj.is_terminal)

    @staticmethod
    def resolve_cost(obj: Any) -> str | None:
        return usd(obj.cost)


class EventOut(Schema):
    from_status: str
    to_status: str
    source: str
    at: datetime
    detail: dict[str, Any]

    @staticmethod
    def resolve_detail(obj: Any) -> dict[str, Any]:
        """The transition's detail, with a cancel asked in the admin (``admin:<username>``)
        shown as ``operator``: the client learns that an operator cancelled, not who."""
        detail = dict(obj.detail or {})
        asked = detail.get("requested_by")
        if isinstance(asked, str) and asked.startswith("admin:"):
            detail["requested_by"] = "operator"
        return detail


class ToolCallOut(Schema):
    call_id: str
    name: str
    arguments: str
    output: str
    error: str = Field(
        description="For a failed call, what the model was told (`tool divide failed: "
        "ZeroDivisionError`); empty otherwise. The detail (message, traceback) is for the admin."
    )
    state: str
    round: int
    created_at: datetime
    submitted_at: datetime | None

    @staticmethod
    def resolve_error(obj: Any) -> str:
        """Never ``ToolCall.error``: that holds the operators' message and traceback."""
        if obj.state != ToolCall.State.ERROR:
            return ""
        return told_the_model(obj.output)


class RunDetail(RunOut):
    events: list[EventOut]
    tool_calls: list[ToolCallOut]

    @staticmethod
    def resolve_events(obj: Any) -> list[Any]:
        return list(obj.events.all())

    @staticmethod
    def resolve_tool_calls(obj: Any) -> list[Any]:
        return list(obj.tool_calls.all())


class RunPage(Schema):
    items: list[RunOut]
    next_cursor: int | None = Field(
        description="Pass as `cursor` for the next (older) page; null on the last page."
    )


class ToolOutputIn(_In):
    call_id: Annotated[Text, Field(min_length=1, max_length=128)]
    output: Annotated[Text, Field(max_length=1_000_000)]


class ToolOutputsIn(_In):
    tool_outputs: Annotated[list[ToolOutputIn], Field(min_length=1, max_length=128)]


class ToolOutputsOut(Schema):
    run: RunOut
    tool_calls: list[ToolCallOut]
