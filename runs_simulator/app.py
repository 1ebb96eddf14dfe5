"""The Starlette application factory.

Why a factory: tests and the CLI build the app from a ``SimState`` so that config and
seed are explicit, and the lifespan hook owns the webhook HTTP client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import (
    api_assistants,
    api_batches,
    api_control,
    api_files,
    api_responses,
    api_webhook_endpoints,
    errors,
)
from .routing import api
from .state import SimState
from .webhooks import WebhookDispatcher


async def _unknown(request: Request, state: SimState) -> Response:
    """Unknown ``/v1`` paths answer like the API: 404 ``Invalid URL``."""
    raise errors.not_found(f"Invalid URL ({request.method} {request.url.path})")


def create_app(state: SimState) -> Starlette:
    """Build the ASGI app serving ``/v1`` and ``/_sim`` for ``state``."""
    dispatcher = WebhookDispatcher(state)
    state.webhooks = dispatcher

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await dispatcher.aclose()

    routes = [
        *api_control.routes,
        *api_responses.routes,
        *api_assistants.routes,
        *api_webhook_endpoints.routes,
        *api_files.routes,
        *api_batches.routes,
        Route(
            "/v1/{rest:path}",
            api("unknown", _unknown),
            methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        ),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.sim = state
    return app
