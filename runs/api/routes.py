"""The operations of the JSON API. Thin: each one validates through its schema, calls a service
from ``runs.services`` and shapes the answer. Errors, everywhere the same:

- 401 without a valid bearer token; 403 for a write with a ``read`` token, or a model or tool
  the client's allow-list does not name; 404 for an unknown id *or another owner's* (each
  client sees only its own rows: ``access.py``); 429 with ``Retry-After`` when throttled;
- 422 when the request does not match the schema (the body lists the invalid fields);
- 400 when a service refuses the input, 409 when the run's state forbids the operation;
  in every one of these cases nothing was written.
"""

from __future__ import annotations

from typing import Annotated

from django.core.exceptions import RequestDataTooBig, ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from ninja import NinjaAPI, Path, Query, Status

from .. import services
from ..conf import settings
from ..metadata_query import with_entry
from ..models import Run, Thread
from . import throttles
from .access import check_allowed, owned_runs, owned_threads
from .auth import OPERATE_AUTH, READ_AUTH, client_of
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
        "`Authorization: Bearer <token>` (tokens from `RUNS_API_TOKENS`); a token sees only "
        "its client's runs and threads, `read` tokens may not write. Live status as "
        "server-sent events: `GET /api/runs/{run_id}/events` (see docs/api.md)."
    ),
    auth=READ_AUTH,
    throttle=throttles.READ,
    urls_namespace="runs-api",
)

ThreadId = Annotated[int, Path(ge=1, le=MAX_ID, description="Our thread id.")]
RunId = Annotated[int, Path(ge=1, le=MAX_ID, description="Our run id.")]

#: Answers every operation may give besides its success.
ERRORS = {401: Error, 422: Error, 429: Error}
#: Writes: a ``read`` token, or a model or tool outside the client's allow-lists.
FORBIDDEN = {403: Error}
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


@api.post(
    "/threads",
    response={201: ThreadOut, **ERRORS, **FORBIDDEN, **BODY, **REFUSED},
    tags=["threads"],
    auth=OPERATE_AUTH,
    throttle=throttles.WRITE,
)
def create_thread(request: HttpRequest, body: ThreadIn) -> Status:
    """Create an empty thread, owned by the token's client; add messages, then start a run."""
    owner = client_of(request).owner
    thread = services.create_thread(backend=body.backend, metadata=body.metadata, owner=owner)
    return Status(201, thread)


@api.get("/threads/{thread_id}", response={200: ThreadOut, **ERRORS, **NOT_FOUND}, tags=["threads"])
def get_thread(request: HttpRequest, thread_id: ThreadId) -> Thread:
    return get_object_or_404(owned_threads(request), pk=thread_id)


@api.post(
    "/threads/{thread_id}/messages",
    response={201: MessageOut, **ERRORS, **FORBIDDEN, **BODY, **NOT_FOUND, **REFUSED, **CONFLICT},
    tags=["threads"],
    auth=OPERATE_AUTH,
    throttle=throttles.WRITE,
)
def add_message(request: HttpRequest, thread_id: ThreadId, body: MessageIn) -> Status:
    """Add a message; the next run started on the thread carries it to OpenAI. 409 on a batch's
    thread (single-turn)."""
    thread = get_object_or_404(owned_threads(request), pk=thread_id)
    return Status(201, services.add_message(thread, body.content, role=body.role))


# --- runs ---------------------------------------------------------------------------------------


@api.post(
    "/runs",
    response={201: RunOut, **ERRORS, **FORBIDDEN, **BODY, **NOT_FOUND, **REFUSED, **CONFLICT},
    tags=["runs"],
    auth=OPERATE_AUTH,
    throttle=throttles.START,
)
def start_run(request: HttpRequest, body: RunIn) -> Status:
    """Create a run and start it (the ``runs.start_run`` task is enqueued on commit)."""
    check_allowed(request, model=body.model, tools=body.tools)
    with transaction.atomic():
        thread = None
        if body.thread_id is not None:
            threads = owned_threads(request).select_for_update()
            thread = get_object_or_404(threads, pk=body.thread_id)
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
            owner=client_of(request).owner,
            completion_window=body.completion_window,
            service_tier=body.service_tier,
            response_format=body.response_format,
            reasoning_effort=body.reasoning_effort,
            max_output_tokens=body.max_output_tokens,
            prompt_cache_key=body.prompt_cache_key,
            safety_identifier=body.safety_identifier,
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
    batch: Annotated[Id | None, Query(None, description="Only the runs of this batch.")] = None,
    created_after: Annotated[UtcDatetime | None, Query(None)] = None,
    created_before: Annotated[UtcDatetime | None, Query(None)] = None,
    meta: Annotated[
        Text | None,
        Query(None, pattern=r"^[^=]{1,64}=.{0,512}$", description="`key=value`: metadata match."),
    ] = None,
    cursor: Annotated[Id | None, Query(None, description="From the previous page.")] = None,
    limit: Annotated[int, Query(50, ge=1, le=200)] = 50,
) -> dict[str, object]:
    """The client's runs, newest first, filtered. Pages by id (a cursor), so page 1,000 is as
    cheap as page 1 (the ``owner, -id`` index)."""
    runs = owned_runs(request).order_by("-id")
    for field, value in (
        ("status", status),
        ("backend", backend),
        ("strategy", strategy),
        ("thread_id", thread_id),
        ("batch_id", batch),
        ("created_at__gte", created_after),
        ("created_at__lt", created_before),
        ("pk__lt", cursor),
    ):
        if value is not None:
            runs = runs.filter(**{field: value})
    if meta is not None:
        key, _, value = meta.partition("=")
        runs = with_entry(runs, key, value)
    page = list(runs[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    return {"items": page, "next_cursor": page[-1].pk if more else None}


@api.get("/runs/{run_id}", response={200: RunDetail, **ERRORS, **NOT_FOUND}, tags=["runs"])
def get_run(request: HttpRequest, run_id: RunId) -> Run:
    """A run with its timeline (status changes) and tool calls."""
    runs = owned_runs(request).prefetch_related("events", "tool_calls")
    return get_object_or_404(runs, pk=run_id)


@api.post(
    "/runs/{run_id}/cancel",
    response={202: RunOut, **ERRORS, **FORBIDDEN, **NOT_FOUND, **CONFLICT},
    tags=["runs"],
    auth=OPERATE_AUTH,
    throttle=throttles.WRITE,
)
def cancel_run(request: HttpRequest, run_id: RunId) -> Status:
    """Cancel: ``cancelled`` at once when OpenAI has not seen the run yet, else ``cancelling``
    until OpenAI confirms (follow it with GET or the event stream). 409 if it already ended."""
    run = get_object_or_404(owned_runs(request), pk=run_id)
    services.cancel_run(run, by="api")
    run.refresh_from_db()
    return Status(202, run)


@api.post(
    "/runs/{run_id}/retry",
    response={201: RunOut, **ERRORS, **FORBIDDEN, **NOT_FOUND, **REFUSED, **CONFLICT},
    tags=["runs"],
    auth=OPERATE_AUTH,
    throttle=throttles.START,
)
def retry_run(request: HttpRequest, run_id: RunId) -> Status:
    """Start a new run with the same input and settings as an ended one (409 if still active).
    The allow-lists are checked again: they may have narrowed since the first run."""
    run = get_object_or_404(owned_runs(request).select_related("thread"), pk=run_id)
    check_allowed(request, model=run.model, tools=run.tools or [])
    return Status(201, services.retry_run(run))


@api.post(
    "/runs/{run_id}/tool_outputs",
    response={200: ToolOutputsOut, **ERRORS, **FORBIDDEN, **BODY, **NOT_FOUND, **REFUSED},
    tags=["runs"],
    auth=OPERATE_AUTH,
    throttle=throttles.WRITE,
)
def submit_tool_outputs(request: HttpRequest, run_id: RunId, body: ToolOutputsIn) -> Status:
    """Give the outputs of manual tool calls. All or nothing: one bad output and none is saved."""
    run = get_object_or_404(owned_runs(request), pk=run_id)
    with transaction.atomic():
        calls = [
            services.submit_tool_output(run, item.call_id, item.output)
            for item in body.tool_outputs
        ]
    run.refresh_from_db()
    return Status(200, {"run": run, "tool_calls": calls})
