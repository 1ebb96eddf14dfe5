"""The wrapper every ``/v1`` endpoint goes through: count, authenticate, inject faults.

Why one wrapper: the order of these steps is itself behaviour we imitate (an
unauthenticated call is refused before anything else; a 429/500 fault happens before the
handler, so nothing is created; a slow or trickle fault happens after it, so the object
exists but the answer arrives late) and must be identical for every endpoint.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from . import errors, faults
from .config import SimConfig
from .errors import ApiError
from .state import SimState

Handler = Callable[[Request, SimState], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]

INVALID_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means "
    "you aren't using your HTTP library correctly. The OpenAI API expects a JSON "
    "payload, but what was sent was not valid JSON.)"
)


def sim_state(request: Request) -> SimState:
    """The simulator state attached to the app."""
    state: SimState = request.app.state.sim
    return state


async def json_body(request: Request) -> dict[str, Any]:
    """Parse the body as a JSON object (empty body = ``{}``), 400 like the API otherwise."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise errors.bad_request(INVALID_JSON) from None
    if not isinstance(body, dict):
        raise errors.bad_request(INVALID_JSON)
    return body


def _authorized(request: Request) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


def api(kind: str, handler: Handler) -> Endpoint:
    """Wrap ``handler`` as the ``/v1`` endpoint named ``kind`` in the stats."""

    async def endpoint(request: Request) -> Response:
        state = sim_state(request)
        state.stats.calls[kind] += 1
        started = time.perf_counter()
        fault: str | None = None
        try:
            if not _authorized(request):
                raise errors.missing_api_key()
            fault = faults.roll(state.config, state.fault_rng, kind)
            if fault == faults.FAULT_429:
                state.stats.faults[fault] += 1
                raise errors.rate_limited(state.config.retry_after_ms)
            if fault == faults.FAULT_500:
                state.stats.faults[fault] += 1
                raise errors.server_error()
            response = await handler(request, state)
        except ApiError as exc:
            response = exc.to_response()
        elapsed = time.perf_counter() - started
        state.stats.record_latency(elapsed)
        response.headers["x-request-id"] = "req_" + uuid.uuid4().hex
        response.headers["openai-processing-ms"] = str(max(1, int(elapsed * 1000)))
        if state.config.latency_s:
            await asyncio.sleep(state.config.latency_s)
        if fault == faults.FAULT_SLOW:
            state.stats.faults[fault] += 1
            await asyncio.sleep(state.config.slow_s)
        if fault == faults.FAULT_TRICKLE:
            state.stats.faults[fault] += 1
            return _trickled(response, state.config)
        return response

    return endpoint


def _trickled(response: Response, config: SimConfig) -> Response:
    """``response`` with its status and headers sent at once and its body a piece at a time.

    The headers (``content-length`` included) go out first, like a server that answers and
    then stalls, so a client's connect and first-read timeouts are met; each later read waits
    only ``trickle_interval_s``. Only a deadline on the whole call stops the client earlier.
    A client that hangs up ends the stream (Starlette cancels it on disconnect).
    """
    interval_s = config.trickle_interval_s
    pieces = faults.trickle_pieces(bytes(response.body), config.trickle_s, interval_s)

    async def body() -> AsyncIterator[bytes]:
        for piece in pieces:
            await asyncio.sleep(interval_s)
            yield piece

    return StreamingResponse(body(), status_code=response.status_code, headers=response.headers)


def json_answer(payload: dict[str, Any], *, poll_after_ms: int | None = None) -> JSONResponse:
    """A 200 JSON answer, optionally with the ``openai-poll-after-ms`` hint."""
    headers = {"openai-poll-after-ms": str(poll_after_ms)} if poll_after_ms else None
    return JSONResponse(payload, headers=headers)
