"""The operations of the JSON API. Thin: each one validates through its schema, calls a service
from ``runs.services`` and shapes the answer. Errors, everywhere the same:

- 401 without a valid bearer token; 404 for an unknown id;
- 422 when the request does not match the schema (the body lists the invalid fields);
- 400 when a service refuses the input, 409 when the run's state forbids the operation;
  in every one of these cases nothing was written.
"""

from __future__ import annotations

from typing import Annotated

from django.core.exceptions import RequestDataTooBig, ValidationError
from django.db import transaction
from django.db.models.fields.json import KeyTextTransform
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from ninja import NinjaAPI, Path, Query, Status

from .. import services
from ..conf import settings
from ..models import Run, Thread
from .auth import BearerToken
from .schemas import (
    MAX_ID,
    BackendName,
    Error,
    Id,
    MessageIn,
    MessageOut,
    RunDetail,
    RunIn,
    RunOut,
    RunPage,
    StatusName,
    StrategyName,
    Text,
    ThreadIn,
    ThreadOut,
    ToolOutputsIn,
    ToolOutputsOut,
    UtcDatetime,
)

api = NinjaAPI(
    title="runs",
    version="1",
    description=(
        "Start OpenAI runs and follow them to a terminal status. Authenticate with "
        "`Authorization: Bearer <token>` (tokens from `RUNS_API_TOKENS`). Live status as "
        "server-sent events: `GET /api/runs/{run_id}/events` (see docs/api.md)."
    ),
    auth=BearerToken(),
    urls_namespace="runs-api",
)

ThreadId = Annotated[int, Path(ge=1, le=MAX_ID, description="Our thread id.")]
RunId = Annotated[int, Path(ge=1, le=MAX_ID, description="Our run id.")]

#: Answers every operation may give besides its success.
ERRORS = {401: Error, 422: Error}
#: Operations with a body: one over DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB by default) is a 413.
BODY = {413: Error}
NOT_FOUND = {404: Error}
REFUSED = {400: Error}
CONFLICT = {409: Error}


@api.exception_handler(RequestDataTooBig)
def too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    """Django refuses to read a body this large; say so in JSON like every other error."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    detail = f"the request body is larger than the {limit} bytes this server accepts"
    return api.create_response(request, {"detail": detail}, status=413)


@api.exception_handler(ValidationError)
def refused(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    """A service said no: 409 when the run's state forbids it, else 400. Nothing was written."""
    status = 409 if getattr(exc, "code", None) == "conflict" else 400
    return api.create_response(request, {"detail": " ".join(exc.messages)}, status=status)


# --- threads and messages ------------------------------------------------------------------------


@api.post("/threads", response={201: ThreadOut, **ERRORS, **BODY, **REFUSED}, tags=["threads"])
def create_thread(request: HttpRequest, body: ThreadIn) -> Status:
    """Create an empty thread; add messages, then start a run on it."""
    return Status(201, services.create_thread(backend=body.backend, metadata=body.metadata))


@api.get("/threads/{thread_id}", response={200: ThreadOut, **ERRORS, **NOT_FOUND}, tags=["threads"])
def get_thread(request: HttpRequest, thread_id: ThreadId) -> Thread:
    return get_object_or_404(Thread, pk=thread_id)


@api.post(
    "/threads/{thread_id}/messages",
    response={201: MessageOut, **ERRORS, **BODY, **NOT_FOUND, **REFUSED},
    tags=["threads"],
)
def add_message(request: HttpRequest, thread_id: ThreadId, body: MessageIn) -> Status:
    """Add a message; the next run started on the thread carries it to OpenAI."""
    thread = get_object_or_404(Thread, pk=thread_id)
    return Status(201, services.add_message(thread, body.content, role=body.role))


# --- runs ---------------------------------------------------------------------------------------


@api.post("/runs", response={201: RunOut, **ERRORS, **BODY, **NOT_FOUND, **REFUSED}, tags=["runs"])
def start_run(request: HttpRequest, body: RunIn) -> Status:
    """Create a run and start it (the ``runs.start_run`` task is enqueued on commit)."""
    with transaction.atomic():
        thread = None
        if body.thread_id is not None:
            thread = get_object_or_404(Thread.objects.select_for_update(), pk=body.thread_id)
        run = services.create_run(
            body.text,
            thread=thread,
            model=body.model,
            instructions=body.instructions,
            metadata=body.metadata,
            backend=body.backend,
            strategy=body.strategy,
            tools=body.tools,
            deadline_s=body.deadline_s,
        )
        services.start(run)
    return Status(201, run)


@api.get("/runs", response={200: RunPage, **ERRORS}, tags=["runs"])
def list_runs(
    request: HttpRequest,
    status: Annotated[StatusName | None, Query(None)] = None,
    backend: Annotated[BackendName | None, Query(None)] = None,
    strategy: Annotated[StrategyName | None, Query(None)] = None,
    thread_id: Annotated[Id | None, Query(None)] = None,
    created_after: Annotated[UtcDatetime | None, Query(None)] = None,
    created_before: Annotated[UtcDatetime | None, Query(None)] = None,
    meta: Annotated[
        Text | None,
        Query(None, pattern=r"^[^=]{1,64}=.{0,512}$", description="`key=value`: metadata match."),
    ] = None,
    cursor: Annotated[Id | None, Query(None, description="From the previous page.")] = None,
    limit: Annotated[int, Query(50, ge=1, le=200)] = 50,
) -> dict[str, object]:
    """Runs, newest first, filtered. Pages by id (a cursor), so page 1,000 is as cheap as page 1."""
    runs = Run.objects.order_by("-id")
    for field, value in (
        ("status", status),
        ("backend", backend),
        ("strategy", strategy),
        ("thread_id", thread_id),
        ("created_at__gte", created_after),
        ("created_at__lt", created_before),
        ("pk__lt", cursor),
    ):
        if value is not None:
            runs = runs.filter(**{field: value})
    if meta is not None:
        key, _, value = meta.partition("=")
        runs = runs.alias(_meta=KeyTextTransform(key, "metadata")).filter(_meta=value)
    page = list(runs[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    return {"items": page, "next_cursor": page[-1].pk if more else None}


@api.get("/runs/{run_id}", response={200: RunDetail, **ERRORS, **NOT_FOUND}, tags=["runs"])
def get_run(request: HttpRequest, run_id: RunId) -> Run:
    """A run with its timeline (status changes) and tool calls."""
    return get_object_or_404(Run.objects.prefetch_related("events", "tool_calls"), pk=run_id)


@api.post(
    "/runs/{run_id}/cancel",
    response={202: RunOut, **ERRORS, **NOT_FOUND, **CONFLICT},
    tags=["runs"],
)
def cancel_run(request: HttpRequest, run_id: RunId) -> Status:
    """Cancel: ``cancelled`` at once when OpenAI has not seen the run yet, else ``cancelling``
    until OpenAI confirms (follow it with GET or the event stream). 409 if it already ended."""
    run = get_object_or_404(Run, pk=run_id)
    services.cancel_run(run, by="api")
    run.refresh_from_db()
    return Status(202, run)


@api.post(
    "/runs/{run_id}/retry",
    response={201: RunOut, **ERRORS, **NOT_FOUND, **REFUSED, **CONFLICT},
    tags=["runs"],
)
def retry_run(request: HttpRequest, run_id: RunId) -> Status:
    """Start a new run with the same input and settings as an ended one (409 if still active)."""
    run = get_object_or_404(Run.objects.select_related("thread"), pk=run_id)
    return Status(201, services.retry_run(run))


@api.post(
    "/runs/{run_id}/tool_outputs",
    response={200: ToolOutputsOut, **ERRORS, **BODY, **NOT_FOUND, **REFUSED},
    tags=["runs"],
)
def submit_tool_outputs(request: HttpRequest, run_id: RunId, body: ToolOutputsIn) -> Status:
    """Give the outputs of manual tool calls. All or nothing: one bad output and none is saved."""
    run = get_object_or_404(Run, pk=run_id)
    with transaction.atomic():
        calls = [
            services.submit_tool_output(run, item.call_id, item.output)
            for item in body.tool_outputs
        ]
    run.refresh_from_db()
    return Status(200, {"run": run, "tool_calls": calls})
