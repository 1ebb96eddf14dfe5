"""Serve the webhook intake on Django's WSGI handler from an ASGI server.

Why: under ASGI, Django runs a synchronous view through its asynchronous middleware chain, and
that chain crosses between the event loop and a thread many times per request: into a thread
for each middleware without async support (WhiteNoise), back to the loop for the middleware
below it, into a thread for each ``process_request`` and ``process_response`` of the
``MiddlewareMixin`` ones (most of Django's own), and once more for the view, on a thread started
for that request. The intake is a synchronous view that OpenAI calls once per event, and it paid
for every crossing: 4.8 ms of the web processes' CPU per signed delivery over uvicorn, against
2.8 ms on this path (1.5x the deliveries per second), which runs the same view, middleware and
URLconf on Django's WSGI handler in a thread pool, the thread handing only the answer back to
the loop (docs/operations.md, "The intake's own path").

``with_intake_on_wsgi(get_asgi_application())`` in the host's ``asgi.py`` sends a request for the
intake's path there, and everything else (the admin, the API, the live status streams, which
are asynchronous) to Django's ASGI handler as before. The WSGI side is a2wsgi's
``WSGIMiddleware``, the adapter uvicorn recommends for WSGI apps (and uses itself when
installed), on a fixed pool of threads; the response is closed there, which sends Django's
``request_finished``, so the database connection goes back to its pool as under a WSGI server.

What stays on the ASGI handler, and why:

* a body without a plain ``Content-Length`` (chunked, or both headers): Django's WSGI request
  reads exactly ``Content-Length`` bytes, so it would read such a body short and refuse a good
  delivery as forged;
* a path that still carries a ``FORCE_SCRIPT_NAME`` prefix (a proxy that keeps it): Django's
  WSGI request does not strip it, its ASGI request does. A prefix the server names
  (``uvicorn --root-path``) is stripped by both, and the intake goes to the pool.

The body is read here, on the event loop, before a thread is taken: a sender that trickles its
body (or never sends it) holds a coroutine, as on Django's ASGI handler, never one of the pool's
threads. A ``Content-Length`` above ``DATA_UPLOAD_MAX_MEMORY_SIZE`` is not read at all: the view
refuses it with a 413 from the header alone.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from a2wsgi import WSGIMiddleware
from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.urls import get_script_prefix, reverse

Scope = MutableMapping[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]

log = logging.getLogger(__name__)

#: a2wsgi's default: deliveries one web process works on at once (each holds a database
#: connection from the process's pool while it records its event).
THREADS = 10


def with_intake_on_wsgi(
    asgi_app: ASGIApp, *, paths: Iterable[str] | None = None, threads: int = THREADS
) -> ASGIApp:
    """``asgi_app``, with requests for ``paths`` served by Django's WSGI handler on ``threads``
    threads. A path is as Django resolves it, without a script prefix; by default the URL named
    ``openai-webhook``, looked up at the first request, once the URLconf can be read."""
    wsgi = WSGIMiddleware(_without_scope(get_wsgi_application()), workers=threads)
    chosen: set[str] | None = set(paths) if paths is not None else None

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal chosen
        if scope["type"] != "http":
            return await asgi_app(scope, receive, send)
        if chosen is None:
            chosen = _intake_path()
        length = _plain_length(scope) if _path(scope) in chosen else None
        if length is None:
            return await asgi_app(scope, receive, send)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and length > limit:
            return await wsgi(scope, _nothing, send)  # refused from the header, never read
        body = await _read(receive)
        if body is not None:
            await wsgi(scope, _replay(body), send)

    return application


def _path(scope: Scope) -> str:
    """The request's path as Django resolves it: without the prefix the server names
    (``root_path``), but with any other, which the WSGI handler would not strip."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _plain_length(scope: Scope) -> int | None:
    """The body's ``Content-Length`` where it alone frames the body, else None."""
    length = None
    for name, value in scope.get("headers", ()):
        if name == b"transfer-encoding":
            return None
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return None
    return length if length is not None and length >= 0 else None


async def _read(receive: Receive) -> bytes | None:
    """The whole body, or None if the client went away first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    """A ``receive`` that hands the view the body already read, then says the client left."""
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Message:
        return messages.pop() if messages else {"type": "http.disconnect"}

    return receive


async def _nothing() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def _without_scope(wsgi_app: WSGIApp) -> WSGIApp:
    """a2wsgi puts the ASGI scope in the environ, and so in ``request.META``, where Django's
    error reports would show its raw headers unfiltered; the view needs none of it."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        environ.pop("asgi.scope", None)
        return wsgi_app(environ, start_response)

    return app


def _intake_path() -> set[str]:
    """The path of the URL named ``openai-webhook``, without the script prefix; none where it
    cannot be looked up (the host named it otherwise, or its URLconf is broken), so that
    everything stays on the ASGI handler, as without this wrapper, and Django reports it."""
    try:
        return {"/" + reverse("openai-webhook")[len(get_script_prefix()) :]}
    except Exception:  # noqa: BLE001 - any failure leaves the app as it was, never broken
        log.warning(
            "no URL named 'openai-webhook' could be looked up: the webhook intake stays on the "
            "ASGI handler; pass paths= to with_intake_on_wsgi",
            exc_info=True,
        )
        return set()
