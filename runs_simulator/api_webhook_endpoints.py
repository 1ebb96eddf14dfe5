"""HTTP handlers for ``/v1/webhook_endpoints`` and ``/v1/webhook_event_types``.

Why thin: the decisions live in ``webhook_endpoints``; handlers only parse, call and render, so
the surface is easy to compare with the SDK's ``client.webhooks`` methods (the reference for
paths and shapes: ``create``, ``retrieve``, ``update``, ``list``, ``delete``, ``rotate_secret``,
``test``, ``event_types.list``).
"""

from __future__ import annotations

import httpx2
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import webhook_endpoints as endpoints
from .errors import bad_request
from .routing import api, json_answer, json_body
from .state import SimState


def _id(request: Request) -> str:
    endpoint_id: str = request.path_params["endpoint_id"]
    return endpoint_id


async def create(request: Request, state: SimState) -> Response:
    """``POST /v1/webhook_endpoints``: the only answer (with rotation's) holding the secret."""
    endpoint = endpoints.create(state, await json_body(request))
    return json_answer(endpoint.render(with_secret=True))


async def list_endpoints(request: Request, state: SimState) -> Response:
    """``GET /v1/webhook_endpoints``."""
    return json_answer(endpoints.list_page(state, dict(request.query_params)))


async def retrieve(request: Request, state: SimState) -> Response:
    """``GET /v1/webhook_endpoints/{id}``."""
    return json_answer(endpoints.get(state, _id(request)).render())


async def update(request: Request, state: SimState) -> Response:
    """``POST /v1/webhook_endpoints/{id}``."""
    endpoint = endpoints.update(state, _id(request), await json_body(request))
    return json_answer(endpoint.render())


async def delete(request: Request, state: SimState) -> Response:
    """``DELETE /v1/webhook_endpoints/{id}``."""
    return json_answer(endpoints.delete(state, _id(request)))


async def rotate_secret(request: Request, state: SimState) -> Response:
    """``POST /v1/webhook_endpoints/{id}/rotate_secret``."""
    endpoint = endpoints.rotate(state, _id(request), await json_body(request))
    return json_answer(endpoint.render(with_secret=True))


async def send_test(request: Request, state: SimState) -> Response:
    """``POST /v1/webhook_endpoints/{id}/test``: deliver a signed sample event now.

    The answer carries the endpoint's status code (``success`` is always true, as in the SDK's
    type); an endpoint that cannot be reached at all is a 400 naming the URL.
    """
    endpoint = endpoints.get(state, _id(request))
    event_type, body = endpoints.sample_event(await json_body(request))
    assert state.webhooks is not None
    try:
        status = await state.webhooks.send_now(endpoint.url, endpoint.secret, body)
    except httpx2.HTTPError as exc:
        raise bad_request(
            f"Could not deliver the test event to {endpoint.url}: {type(exc).__name__}."
        ) from None
    return json_answer(
        {
            "object": "webhook_endpoint.test",
            "webhook_endpoint_id": endpoint.id,
            "event_type": event_type,
            "status_code": status,
            "success": True,
        }
    )


async def event_types(request: Request, state: SimState) -> Response:
    """``GET /v1/webhook_event_types``."""
    return json_answer({"object": "list", "data": list(endpoints.EVENT_TYPES)})


_ONE = "/v1/webhook_endpoints/{endpoint_id}"

routes = [
    Route("/v1/webhook_endpoints", api("webhooks.create", create), methods=["POST"]),
    Route("/v1/webhook_endpoints", api("webhooks.list", list_endpoints), methods=["GET"]),
    Route(_ONE, api("webhooks.retrieve", retrieve), methods=["GET"]),
    Route(_ONE, api("webhooks.update", update), methods=["POST"]),
    Route(_ONE, api("webhooks.delete", delete), methods=["DELETE"]),
    Route(f"{_ONE}/rotate_secret", api("webhooks.rotate_secret", rotate_secret), methods=["POST"]),
    Route(f"{_ONE}/test", api("webhooks.test", send_test), methods=["POST"]),
    Route("/v1/webhook_event_types", api("webhooks.event_types", event_types), methods=["GET"]),
]
