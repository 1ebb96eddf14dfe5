"""HTTP handlers for ``/v1/batches`` (thin: the decisions live in ``batch_service``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import batch_service
from .batches import render
from .routing import api, json_answer, json_body
from .state import SimState


def _id(request: Request) -> str:
    batch_id: str = request.path_params["batch_id"]
    return batch_id


async def create(request: Request, state: SimState) -> Response:
    """``POST /v1/batches``."""
    batch = batch_service.create(state, await json_body(request))
    return json_answer(render(batch, state.now()))


async def list_batches(request: Request, state: SimState) -> Response:
    """``GET /v1/batches``."""
    return json_answer(batch_service.list_page(state, dict(request.query_params)))


async def retrieve(request: Request, state: SimState) -> Response:
    """``GET /v1/batches/{id}``."""
    batch = batch_service.retrieve(state, _id(request))
    return json_answer(render(batch, state.now()))


async def cancel(request: Request, state: SimState) -> Response:
    """``POST /v1/batches/{id}/cancel``."""
    batch = batch_service.cancel(state, _id(request))
    return json_answer(render(batch, state.now()))


routes = [
    Route("/v1/batches", api("batches.create", create), methods=["POST"]),
    Route("/v1/batches", api("batches.list", list_batches), methods=["GET"]),
    Route("/v1/batches/{batch_id}", api("batches.retrieve", retrieve), methods=["GET"]),
    Route("/v1/batches/{batch_id}/cancel", api("batches.cancel", cancel), methods=["POST"]),
]
