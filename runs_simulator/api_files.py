"""HTTP handlers for ``/v1/files`` (thin: the decisions live in ``files``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import files
from .routing import api, json_answer
from .state import SimState


def _id(request: Request) -> str:
    file_id: str = request.path_params["file_id"]
    return file_id


async def upload(request: Request, state: SimState) -> Response:
    """``POST /v1/files`` (multipart/form-data: ``file``, ``purpose``, ``expires_after``)."""
    body = await request.body()
    record = files.upload(state, request.headers.get("content-type", ""), body)
    return json_answer(record.render())


async def list_files(request: Request, state: SimState) -> Response:
    """``GET /v1/files``."""
    return json_answer(files.list_page(state, dict(request.query_params)))


async def retrieve(request: Request, state: SimState) -> Response:
    """``GET /v1/files/{id}``."""
    record = files.get(state, _id(request))
    state.stats.touch(record.id, "retrieve")
    return json_answer(record.render())


async def content(request: Request, state: SimState) -> Response:
    """``GET /v1/files/{id}/content``: the bytes as stored."""
    record = files.get(state, _id(request))
    state.stats.touch(record.id, "content")
    return Response(record.content, media_type="application/octet-stream")


async def delete(request: Request, state: SimState) -> Response:
    """``DELETE /v1/files/{id}``."""
    state.stats.touch(_id(request), "delete")
    return json_answer(files.delete(state, _id(request)))


_ONE = "/v1/files/{file_id}"

routes = [
    Route("/v1/files", api("files.create", upload), methods=["POST"]),
    Route("/v1/files", api("files.list", list_files), methods=["GET"]),
    Route(_ONE, api("files.retrieve", retrieve), methods=["GET"]),
    Route(_ONE, api("files.delete", delete), methods=["DELETE"]),
    Route(f"{_ONE}/content", api("files.content", content), methods=["GET"]),
]
