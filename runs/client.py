"""The OpenAI client used inside tasks, with a total deadline on every API call.

Why a deadline of our own: the SDK's timeout is an httpx2 timeout, which bounds each *phase* of a
call (waiting for a pooled connection, connecting, each write, each read), not the call. A server
that sends a byte every few seconds meets every read timeout and keeps the worker slot forever.
Celery's time limits would stop it under the prefork pool, but our workers run the threads pool,
which ignores them. So the timeout the SDK passes for a request (``OPENAI_TIMEOUT_S``, or
``OPENAI_CREATE_TIMEOUT_S`` through ``get_create_client``, ``RUNS_BATCH_FILE_TIMEOUT_S`` through
``get_file_client``) is also the budget of the whole call, enforced here, whatever the pool:

- every socket operation (connect, TLS handshake, each write, each read) waits at most the time
  left, and one that starts with no time left fails at once (``_DeadlineBackend``);
- the response body is also checked between chunks (``_DeadlineStream``), a second line that holds
  even where our network backend is missing.

A spent budget raises httpx2's ``ConnectTimeout``/``WriteTimeout``/``ReadTimeout``, which the SDK
turns into ``openai.APITimeoutError``: for ``errors.py`` a timeout whose outcome is unknown, retried
on a countdown like any other.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from functools import lru_cache
from typing import Any

import httpcore2
import httpx2
import openai

from .conf import settings

log = logging.getLogger(__name__)

#: The monotonic time by which the call running in this thread must be over (None: no deadline).
#: A context variable, not an attribute of the connection: a pooled connection serves one call
#: after another, and the threads pool runs calls side by side.
_DEADLINE: ContextVar[float | None] = ContextVar("runs_openai_call_deadline", default=None)

#: The SDK's own pool limits (its default client's), which a client of ours must restate.
_LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=100)

_PHASES = ("connect", "read", "write", "pool")


def _total_budget(request: httpx2.Request) -> float | None:
    """The whole call's budget: the longest of the per-phase timeouts the SDK set for it.

    The SDK passes one number (``timeout=10.0``: every phase 10 s), so this is that number, and a
    per-request ``with_options(timeout=...)`` arrives the same way. A phase without a timeout
    (None) means the caller chose to wait for it without limit, so the call gets no total either.
    """
    phases = request.extensions.get("timeout") or {}
    values = [phases.get(name) for name in _PHASES]
    if not phases or any(value is None for value in values):
        return None
    return float(max(values))


def _time_left(timeout: float | None, expired: type[httpcore2.TimeoutException]) -> float | None:
    """``timeout`` shortened to what is left of the current call's budget.

    Raises ``expired`` when nothing is left: a socket timeout of 0 would make the socket
    non-blocking and fail with an error that is not a timeout.
    """
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("the API call's total deadline has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineNetworkStream(httpcore2.NetworkStream):
    """A connection whose every read and write waits at most the time left of the current call."""

    def __init__(self, stream: httpcore2.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _time_left(timeout, httpcore2.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _time_left(timeout, httpcore2.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.NetworkStream:
        left = _time_left(timeout, httpcore2.ConnectTimeout)
        return _DeadlineNetworkStream(self._stream.start_tls(ssl_context, server_hostname, left))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore2.NetworkBackend):
    """Opens connections with ``_DeadlineNetworkStream`` around them (and connects in time)."""

    def __init__(self, backend: httpcore2.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        left = _time_left(timeout, httpcore2.ConnectTimeout)
        stream = self._backend.connect_tcp(host, port, left, local_address, socket_options)
        return _DeadlineNetworkStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        left = _time_left(timeout, httpcore2.ConnectTimeout)
        return _DeadlineNetworkStream(self._backend.connect_unix_socket(path, left, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class _DeadlineStream(httpx2.SyncByteStream):
    """A response body read under its call's deadline.

    The body is read after ``handle_request`` has returned (by the SDK, in ``Client.send``), so
    each chunk is pulled with the deadline set again, and a chunk that comes too late is refused.
    """

    def __init__(
        self, stream: httpx2.SyncByteStream, deadline: float | None, request: httpx2.Request
    ) -> None:
        self._stream = stream
        self._deadline = deadline
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        chunks = iter(self._stream)
        while True:
            token = _DEADLINE.set(self._deadline)
            try:
                chunk = next(chunks, None)
            finally:
                _DEADLINE.reset(token)
            if chunk is None:
                return
            if self._deadline is not None and time.monotonic() > self._deadline:
                raise httpx2.ReadTimeout(
                    "the API call's total deadline has passed", request=self._request
                )
            yield chunk

    def close(self) -> None:
        self._stream.close()


class DeadlineTransport(httpx2.HTTPTransport):
    """httpx2's transport, plus a total deadline per request (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # httpcore2 takes a network backend only when the pool is built, and httpx2 builds it
        # without one: wrap the default backend of the pool it built. Checked by
        # tests/test_client_deadline.py; should a release rename it, the body checks still bound
        # a call to its budget plus one read.
        pool = getattr(self, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, httpcore2.NetworkBackend):
            pool._network_backend = _DeadlineBackend(backend)
        else:
            log.warning("httpcore2 changed: API reads are no longer cut at the call's deadline")

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        budget = _total_budget(request)
        deadline = None if budget is None else time.monotonic() + budget
        token = _DEADLINE.set(deadline)
        try:
            response = super().handle_request(request)
        finally:
            _DEADLINE.reset(token)
        assert isinstance(response.stream, httpx2.SyncByteStream)
        response.stream = _DeadlineStream(response.stream, deadline, request)
        return response


class DeadlineHttpClient(httpx2.Client):
    """An ``httpx2.Client`` whose every transport is a ``DeadlineTransport``.

    Passing ``transport=`` to ``httpx2.Client`` would turn off the proxies from the environment
    (``HTTPS_PROXY`` ...), which the SDK's default client honours; building our transport where
    httpx2 builds its own keeps them, and keeps every other default.
    """

    def _init_transport(
        self, *, transport: httpx2.BaseTransport | None = None, **kwargs: Any
    ) -> httpx2.BaseTransport:
        return transport if transport is not None else DeadlineTransport(**kwargs)

    def _init_proxy_transport(self, proxy: httpx2.Proxy, **kwargs: Any) -> httpx2.BaseTransport:
        return DeadlineTransport(proxy=proxy, **kwargs)


@lru_cache(maxsize=1)
def get_client() -> openai.OpenAI:
    """One client per process: it keeps an HTTP connection pool, so reuse it across tasks.

    ``max_retries=0`` because the SDK retries by sleeping in the calling thread, which would hold
    the worker slot (and multiply the deadline above by the number of tries); our retries are
    Celery countdowns (see ``errors.py``). The timeout is short for the same reason: a slow answer
    is retried later rather than waited for.
    """
    timeout = settings.OPENAI_TIMEOUT_S
    return openai.OpenAI(
        # Without a key the SDK refuses to start; the simulator accepts any key, a real server
        # answers 401, which fails the run with a clear error.
        api_key=settings.OPENAI_API_KEY or "sk-no-key-set",
        base_url=settings.OPENAI_BASE_URL or None,
        max_retries=0,
        timeout=timeout,
        http_client=DeadlineHttpClient(timeout=timeout, limits=_LIMITS, follow_redirects=True),
    )


@lru_cache(maxsize=1)
def get_create_client() -> openai.OpenAI:
    """The client for creates: same pool, more patience.

    A create whose answer is lost may be doubled by the retry (the Responses API offers no way to
    look a response up by our metadata), so creates wait longer than retrieves, which are free to
    retry. The SDK sends this timeout with each request, so the deadline follows it.
    """
    return get_client().with_options(timeout=settings.OPENAI_CREATE_TIMEOUT_S)


def get_file_client() -> openai.OpenAI:
    """The client for the Batch API's files: same pool, the patience a big file needs.

    An input file may hold 200 MB and the output of 50,000 responses as much: neither fits in a
    create's 30 s, and a download cut off every time would be retried until the batch's deadline.
    So a transfer's whole-call deadline is ``RUNS_BATCH_FILE_TIMEOUT_S``. Not cached: a transfer
    is rare (a few per batch), and a fresh copy of ``get_client()`` (the same pool) follows that
    client's base URL and the setting as they are now.
    """
    return get_client().with_options(timeout=settings.RUNS_BATCH_FILE_TIMEOUT_S)
