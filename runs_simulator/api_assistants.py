"""HTTP handlers for the Assistants endpoints (threads, messages, runs).

Why accept but not require ``OpenAI-Beta: assistants=v2``: the SDK always sends it, and a
hand-written client that forgets it should still reach the simulated behaviour.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from . import assistant_service as service
from .assistants import TERMINAL_RUN, RunRecord
from .routing import api, json_answer, json_body
from .state import SimState


def _run_answer(state: SimState, run: RunRecord, poll_hint: bool = False) -> Response:
    hint = state.config.poll_after_ms if poll_hint and run.status not in TERMINAL_RUN else None
    return json_answer(run.render(), poll_after_ms=hint)


async def create_thread(request: Request, state: SimState) -> Response:
    """``POST /v1/threads``."""
    return json_answer(service.create_thread(state, await json_body(request)).render())


async def retrieve_thread(request: Request, state: SimState) -> Response:
    """``GET /v1/threads/{id}``."""
    thread_id = request.path_params["thread_id"]
    thread = service.get_thread(state, thread_id)
    state.stats.touch(thread_id, "retrieve")
    return json_answer(thread.render())


async def create_message(request: Request, state: SimState) -> Response:
    """``POST /v1/threads/{id}/messages``."""
    message = service.create_message(
        state, request.path_params["thread_id"], await json_body(request)
    )
    return json_answer(message)


async def list_messages(request: Request, state: SimState) -> Response:
    """``GET /v1/threads/{id}/messages``."""
    page = service.list_messages(
        state, request.path_params["thread_id"], dict(request.query_params)
    )
    return json_answer(page)


async def create_run(request: Request, state: SimState) -> Response:
    """``POST /v1/threads/{id}/runs``."""
    run = service.create_run(state, request.path_params["thread_id"], await json_body(request))
    return _run_answer(state, run)


async def list_runs(request: Request, state: SimState) -> Response:
    """``GET /v1/threads/{id}/runs``."""
    return json_answer(service.list_runs(state, request.path_params["thread_id"]))


async def retrieve_run(request: Request, state: SimState) -> Response:
    """``GET /v1/threads/{id}/runs/{run_id}`` (poll hint while not terminal)."""
    run = service.retrieve_run(
        state, request.path_params["thread_id"], request.path_params["run_id"]
    )
    return _run_answer(state, run, poll_hint=True)


async def cancel_run(request: Request, state: SimState) -> Response:
    """``POST /v1/threads/{id}/runs/{run_id}/cancel``."""
    run = service.cancel_run(state, request.path_params["thread_id"], request.path_params["run_id"])
    return _run_answer(state, run)


async def submit_tool_outputs(request: Request, state: SimState) -> Response:
    """``POST /v1/threads/{id}/runs/{run_id}/submit_tool_outputs``."""
    run = service.submit_tool_outputs(
        state,
        request.path_params["thread_id"],
        request.path_params["run_id"],
        await json_body(request),
    )
    return _run_answer(state, run)


_T = "/v1/threads/{thread_id}"
routes: list[BaseRoute] = [
    Route("/v1/threads", api("threads.create", create_thread), methods=["POST"]),
    Route(_T, api("threads.retrieve", retrieve_thread), methods=["GET"]),
    Route(_T + "/messages", api("threads.messages.create", create_message), methods=["POST"]),
    Route(_T + "/messages", api("threads.messages.list", list_messages), methods=["GET"]),
    Route(_T + "/runs", api("threads.runs.create", create_run), methods=["POST"]),
    Route(_T + "/runs", api("threads.runs.list", list_runs), methods=["GET"]),
    Route(_T + "/runs/{run_id}", api("threads.runs.retrieve", retrieve_run), methods=["GET"]),
    Route(_T + "/runs/{run_id}/cancel", api("threads.runs.cancel", cancel_run), methods=["POST"]),
    Route(
        _T + "/runs/{run_id}/submit_tool_outputs",
        api("threads.runs.submit_tool_outputs", submit_tool_outputs),
        methods=["POST"],
    ),
]
