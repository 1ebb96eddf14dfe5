"""HTTP handlers for ``/v1/responses`` and ``/v1/conversations``.

Why thin: all decisions live in the services; handlers only parse, call and render, so
the HTTP surface is easy to compare with the OpenAPI description.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import conversation_service, response_service
from .responses import render
from .routing import api, json_answer, json_body
from .state import SimState


async def create_response(request: Request, state: SimState) -> Response:
    """``POST /v1/responses``."""
    record = response_service.create(state, await json_body(request))
    return json_answer(render(record, state.now()))


async def retrieve_response(request: Request, state: SimState) -> Response:
    """``GET /v1/responses/{id}`` (adds the poll hint while not terminal)."""
    record = response_service.retrieve(state, request.path_params["response_id"])
    now = state.now()
    hint = None if record.is_terminal(now) else state.config.poll_after_ms
    return json_answer(render(record, now), poll_after_ms=hint)


async def cancel_response(request: Request, state: SimState) -> Response:
    """``POST /v1/responses/{id}/cancel``."""
    record = response_service.cancel(state, request.path_params["response_id"])
    return json_answer(render(record, state.now()))


async def create_conversation(request: Request, state: SimState) -> Response:
    """``POST /v1/conversations``."""
    conversation = conversation_service.create(state, await json_body(request))
    return json_answer(conversation.render())


async def retrieve_conversation(request: Request, state: SimState) -> Response:
    """``GET /v1/conversations/{id}``."""
    conversation_id = request.path_params["conversation_id"]
    conversation = conversation_service.get_conversation(state, conversation_id)
    state.stats.touch(conversation_id, "retrieve")
    return json_answer(conversation.render())


async def create_items(request: Request, state: SimState) -> Response:
    """``POST /v1/conversations/{id}/items``."""
    page = conversation_service.add_items(
        state, request.path_params["conversation_id"], await json_body(request)
    )
    return json_answer(page)


async def list_items(request: Request, state: SimState) -> Response:
    """``GET /v1/conversations/{id}/items``."""
    page = conversation_service.list_items(
        state, request.path_params["conversation_id"], dict(request.query_params)
    )
    return json_answer(page)


routes = [
    Route("/v1/responses", api("responses.create", create_response), methods=["POST"]),
    Route(
        "/v1/responses/{response_id}", api("responses.retrieve", retrieve_response), methods=["GET"]
    ),
    Route(
        "/v1/responses/{response_id}/cancel",
        api("responses.cancel", cancel_response),
        methods=["POST"],
    ),
    Route("/v1/conversations", api("conversations.create", create_conversation), methods=["POST"]),
    Route(
        "/v1/conversations/{conversation_id}",
        api("conversations.retrieve", retrieve_conversation),
        methods=["GET"],
    ),
    Route(
        "/v1/conversations/{conversation_id}/items",
        api("conversations.items.create", create_items),
        methods=["POST"],
    ),
    Route(
        "/v1/conversations/{conversation_id}/items",
        api("conversations.items.list", list_items),
        methods=["GET"],
    ),
]
