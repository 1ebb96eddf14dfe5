"""The smallest ASGI answer in two parts, headers then body, as Django's sends: what
``bench.keepalive`` serves, so a request's time is uvicorn's and the network's, not an app's."""

from __future__ import annotations

from typing import Any

BODY = b'{"ok": true}'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await receive()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})
