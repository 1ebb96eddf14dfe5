"""``/api/batches``: send many single-turn prompts as one Batch API job, follow it, cancel it.

Owner-scoped like runs: a batch belongs to the client that made it, and another client's batch
is the same 404 as one that does not exist. Creating one is a ``start`` (each costs money at
OpenAI) and needs an ``operate`` token; the model is checked against the client's allow-list.
Errors are the API's (``routes.py``): 400 when the service refuses the input (nothing written),
409 when a cancel comes after the end, 422 for a body that does not match the schema.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from django.db.models import Count
from django.db.models.query import QuerySet
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Field, Path, Query, Router, Schema, Status
from pydantic import ConfigDict

from .. import services
from ..models import Batch
from ..status import BatchStatus
from . import throttles
from .access import check_allowed
from .auth import OPERATE_AUTH, client_of
from .schemas import (
    MAX_ID,
    EffortName,
    Error,
    Id,
    Metadata,
    OptionKey,
    StrategyName,
    Text,
    usd,
)

router = Router(tags=["batches"])

BatchId = Annotated[int, Path(ge=1, le=MAX_ID, description="Our batch id.")]
BatchStatusName = Annotated[str, Field(pattern="^(" + "|".join(BatchStatus.values) + ")$")]
Prompt = Annotated[Text, Field(min_length=1, max_length=100_000, pattern=r"\S")]
#: The schema's cap; the service refuses more than ``RUNS_BATCH_MAX_RUNS`` (400).
MOST_PROMPTS = 50_000

ERRORS = {401: Error, 422: Error, 429: Error}


def owned_batches(request: HttpRequest) -> QuerySet[Batch]:
    return Batch.objects.filter(owner=client_of(request).owner)


class BatchIn(Schema):
    """One run per prompt, each single-turn, sent as one batch (half price, within 24 h)."""

    model_config = ConfigDict(extra="forbid")

    prompts: Annotated[list[Prompt], Field(min_length=1, max_length=MOST_PROMPTS)]
    model: Annotated[Text, Field(min_length=1, max_length=64)] | None = None
    instructions: Annotated[Text, Field(max_length=100_000)] = ""
    metadata: Metadata | None = None
    strategy: StrategyName | None = Field(
        None, description="`webhook`: followed by batch.* events; `poll`: a growing countdown."
    )
    response_format: dict[str, Any] | None = Field(
        None, description="Structured output for every run (see `POST /api/runs`)."
    )
    reasoning_effort: EffortName | None = None
    max_output_tokens: Annotated[int, Field(ge=16)] | None = None
    prompt_cache_key: OptionKey | None = None
    safety_identifier: OptionKey | None = None


class BatchOut(Schema):
    id: int
    status: str
    terminal: bool
    model: str
    strategy: str
    metadata: dict[str, Any]
    remote_id: str
    request_counts: dict[str, int] | None = Field(description="As the Batch API reports them.")
    cost: str | None = Field(description="USD, its runs' sum; null while none is known.")
    last_error_code: str
    last_error: str
    api_calls: int
    polls: int
    webhook_events: int
    created_at: datetime
    submitted_at: datetime | None
    completed_at: datetime | None
    deadline_at: datetime | None
    next_poll_at: datetime | None

    @staticmethod
    def resolve_terminal(obj: Batch) -> bool:
        return obj.is_terminal

    @staticmethod
    def resolve_cost(obj: Batch) -> str | None:
        return usd(obj.cost)


class BatchDetail(BatchOut):
    """A batch with its runs counted by status. Not listed: a batch holds up to 50,000 runs;
    ``GET /api/runs?batch=<id>`` pages through them like any other runs."""

    counts: dict[str, int] = Field(description="Its runs by status.")

    @staticmethod
    def resolve_counts(obj: Batch) -> dict[str, int]:
        rows = obj.runs.values("status").annotate(n=Count("pk")).values_list("status", "n")
        return dict(rows)


class BatchPage(Schema):
    items: list[BatchOut]
    next_cursor: int | None


@router.post(
    "",
    response={201: BatchOut, 400: Error, 403: Error, 413: Error, **ERRORS},
    auth=OPERATE_AUTH,
    throttle=throttles.START,
)
def create_batch(request: HttpRequest, body: BatchIn) -> Status:
    """Create one run per prompt and submit them as a batch (``runs.submit_batch`` on commit)."""
    check_allowed(request, model=body.model, tools=[])
    options = body.dict(
        include={
            "response_format",
            "reasoning_effort",
            "max_output_tokens",
            "prompt_cache_key",
            "safety_identifier",
        },
        exclude_none=True,
    )
    batch = services.create_batch(
        body.prompts,
        model=body.model,
        instructions=body.instructions,
        metadata=body.metadata,
        strategy=body.strategy,
        owner=client_of(request).owner,
        **options,
    )
    return Status(201, batch)


@router.get("", response={200: BatchPage, **ERRORS})
def list_batches(
    request: HttpRequest,
    status: Annotated[BatchStatusName | None, Query(None)] = None,
    cursor: Annotated[Id | None, Query(None, description="From the previous page.")] = None,
    limit: Annotated[int, Query(50, ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """The client's batches, newest first (the ``owner, -id`` index), by cursor."""
    batches = owned_batches(request).order_by("-id")
    if status is not None:
        batches = batches.filter(status=status)
    if cursor is not None:
        batches = batches.filter(pk__lt=cursor)
    page = list(batches[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    return {"items": page, "next_cursor": page[-1].pk if more else None}


@router.get("/{batch_id}", response={200: BatchDetail, 404: Error, **ERRORS})
def get_batch(request: HttpRequest, batch_id: BatchId) -> Batch:
    """A batch with its runs counted by status (``GET /api/runs?batch=`` lists them)."""
    return get_object_or_404(owned_batches(request), pk=batch_id)


@router.post(
    "/{batch_id}/cancel",
    response={202: BatchOut, 403: Error, 404: Error, 409: Error, **ERRORS},
    auth=OPERATE_AUTH,
    throttle=throttles.WRITE,
)
def cancel_batch(request: HttpRequest, batch_id: BatchId) -> Status:
    """``cancelled`` at once when it was not sent yet, else ``cancelling`` until OpenAI stops it
    (each open run then ends as its files say). 409 if it already ended."""
    batch = get_object_or_404(owned_batches(request), pk=batch_id)
    services.cancel_batch(batch, by="api")
    batch.refresh_from_db()
    return Status(202, batch)
