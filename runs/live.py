"""Live status: run status changes over Redis pub/sub, out to browsers as server-sent events.

    transition() --commit--> run_status_changed --> publish_status_change() --PUBLISH-->
        Redis channel runs:run:<id> --SUBSCRIBE--> event stream (one per open page) --> browser

Whichever process commits a change (a worker after a poll, the web process after a cancel)
publishes it; every stream open on that run hears it, in any web process. A message is only a
nudge: the stream re-reads the run and sends its current state, so a lost or reordered message
costs nothing but a moment, and the first event of every stream is the state at connect time.

The stream is an async generator on ``redis.asyncio`` under ASGI (uvicorn), waiting on the event
loop; the one thread an open page keeps is the idle one asgiref gives each ASGI request for
Django's synchronous calls (docs/api.md). Under WSGI (``runserver``, the test live server) the
same events come from a blocking generator, which holds one of the server's worker threads per
page: fine for development, not for production.

Which Redis (``pubsub_url``): ``RUNS_PUBSUB_URL`` when the host sets it (``""``: live status is
off); unset, the Redis every process already reaches, ``REDIS_URL`` or else the broker, whichever
is a Redis URL, the way the request budget finds its Redis. An AMQP broker is never used.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from functools import lru_cache
from typing import Any

import redis
import redis.asyncio as aredis
from asgiref.sync import sync_to_async
from django.db import connection
from redis.exceptions import RedisError

from . import live_slots
from .breaker import Breaker
from .conf import default_redis_url, redis_url_or_none, settings
from .live_slots import Slot
from .models import Run
from .status import TERMINAL

log = logging.getLogger(__name__)

#: The fields a stream sends for a run (cheap: one indexed row).
SNAPSHOT_FIELDS = (
    "id",
    "status",
    "remote_id",
    "api_calls",
    "polls",
    "webhook_events",
    "last_error_code",
    "last_error",
    "output_text",
    "completed_at",
)


def channel(run_id: int) -> str:
    return f"runs:run:{run_id}"


def pubsub_url() -> str:
    """The live-status Redis URL ("" when live status is off); see the module's docstring.

    A host that sets ``RUNS_PUBSUB_URL`` gets exactly that (a URL that is not Redis is a
    warning at start-up, ``runs.W301``, and a logged warning at publish time).
    """
    configured = settings.RUNS_PUBSUB_URL
    if configured is not None:
        return configured
    return default_redis_url() or ""


# --- publishing (any process) --------------------------------------------------------------------


#: While Redis is unreachable, warn at most this often.
WARN_EVERY_S = 60.0
_last_warning = -WARN_EVERY_S


#: A stream's own Redis calls (its slot, the subscribe, the cleanup): a Redis that hangs instead
#: of refusing must not hold the stream, its slot and its connection until TCP gives up. The
#: wait for a message has its own timeout, the heartbeat, which this does not shorten.
STREAM_REDIS_TIMEOUTS = {"socket_connect_timeout": 5.0, "socket_timeout": 5.0}

#: Skips publishing for a few seconds after a failure (``breaker``).
paused = Breaker()


@lru_cache(maxsize=4)
def _publisher(url: str) -> redis.Redis:
    # Short timeouts: a Redis outage must not slow down the commit that sends the signal.
    return redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)


def publish_status_change(
    sender: Any, *, run_id: int, from_status: str, to_status: str, source: str, **kwargs: Any
) -> None:
    """``run_status_changed`` receiver: tell open streams. Never raises (it runs on commit).

    Live status is a side channel: whatever goes wrong here (Redis down, a URL that is not
    Redis, a bug in a client library) is logged at most once a minute and never reaches the
    task or request that made the change, and publishing pauses for ``breaker.PAUSE_S``.
    """
    url = pubsub_url()
    if not url or paused.is_open():
        return
    message = json.dumps(
        {"run_id": run_id, "from_status": from_status, "to_status": to_status, "source": source}
    )
    try:
        if redis_url_or_none(url) is None:
            raise ValueError("RUNS_PUBSUB_URL is not a redis://, rediss:// or unix:// URL")
        _publisher(url).publish(channel(run_id), message)
    except Exception as exc:  # noqa: BLE001 - a side channel must never break the engine
        paused.trip()
        _warn(exc)


def _warn(exc: Exception) -> None:
    global _last_warning
    if time.monotonic() - _last_warning > WARN_EVERY_S:  # one line per minute, not per run
        _last_warning = time.monotonic()
        log.warning(
            "live status: cannot publish to Redis (%s); open streams now only catch up "
            "at their heartbeat",
            exc,
        )


def _gone(exc: Exception) -> None:
    """A stream's Redis went away (killed, restarted, flushed): the stream ends as at its
    ``RUNS_SSE_MAX_S``, the client reconnects after the ``retry`` it was told; one log line a
    minute, not one per open stream, and never an exception out of the ASGI app."""
    global _last_gone
    if time.monotonic() - _last_gone > WARN_EVERY_S:
        _last_gone = time.monotonic()
        log.warning("live status: a stream's Redis went away (%s); its clients reconnect", exc)


_last_gone = -WARN_EVERY_S


# --- the event stream ---------------------------------------------------------------------------


def snapshot_event(snapshot: dict[str, Any]) -> bytes:
    """One SSE ``status`` event; the run id and status double as the event id."""
    data = dict(snapshot)
    if data.get("completed_at") is not None:
        data["completed_at"] = data["completed_at"].isoformat()
    data["terminal"] = data["status"] in TERMINAL
    payload = json.dumps(data, separators=(",", ":"))
    return f"id: {data['id']}:{data['status']}\nevent: status\ndata: {payload}\n\n".encode()


#: Sent first: how long a browser waits before reconnecting when the stream ends early.
PREAMBLE = b"retry: 2000\n\n"
HEARTBEAT = b": keep-alive\n\n"


def _settings() -> tuple[float, float]:
    return settings.RUNS_SSE_HEARTBEAT_S, settings.RUNS_SSE_MAX_S


def step(
    snapshot: dict[str, Any] | None, last_status: str | None
) -> tuple[bytes, str | None, bool]:
    """What to send for the run as it is now: (bytes to send, status sent, stream done)."""
    if snapshot is None:
        return b"", last_status, True  # deleted meanwhile
    if snapshot["status"] == last_status:
        return b"", last_status, False
    return snapshot_event(snapshot), snapshot["status"], snapshot["status"] in TERMINAL


async def astream(run_id: int, url: str, slot: Slot | None = None) -> AsyncIterator[bytes]:
    """Async SSE stream for ASGI: the run now, then each change, until it ends (or max time).

    Subscribes *before* reading the run, so a change between the two is not missed. Each
    message or heartbeat re-reads the run (one primary-key query), which also covers a lost one.
    ``slot``: this stream's place under its client's cap (``live_slots``), freed at the end.
    """
    heartbeat, max_s = _settings()
    client = aredis.Redis.from_url(url, **STREAM_REDIS_TIMEOUTS)
    pubsub = client.pubsub()
    try:
        try:
            if slot is not None:
                await live_slots.aextend(client, slot, max_s)
            await pubsub.subscribe(channel(run_id))
            yield PREAMBLE
            last: str | None = None
            deadline = time.monotonic() + max_s
            while time.monotonic() < deadline:
                snapshot = await sync_to_async(_snapshot_and_let_go)(run_id)
                chunk, last, done = step(snapshot, last)
                if chunk:
                    yield chunk
                if done:
                    return
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=heartbeat
                )
                if message is None:
                    yield HEARTBEAT
        except (RedisError, OSError) as exc:
            _gone(exc)  # the stream ends cleanly; the client reconnects after ``retry``
    finally:
        # Also on a client disconnect: Django cancels the generator and we land here.
        try:
            if slot is not None:
                await live_slots.arelease(client, slot)
        except Exception as exc:  # noqa: BLE001 - the slot then frees itself at its time
            log.warning("live status: a closed stream's slot was not freed (%s)", exc)
        await pubsub.aclose()
        await client.aclose()


def _snapshot_and_let_go(run_id: int) -> dict[str, Any] | None:
    """The run's snapshot, then the connection handed back (to the process's pool).

    An ASGI stream lives for up to ``RUNS_SSE_MAX_S`` and Django gives its request's connection
    back only at the end: twenty open pages would hold twenty pooled connections, and webhooks
    would wait for one. Runs on the request's own thread (``sync_to_async``'s default), so the
    connection the view's existence check took goes back too. Never inside a transaction.
    """
    try:
        return Run.objects.filter(pk=run_id).values(*SNAPSHOT_FIELDS).first()
    finally:
        if not connection.in_atomic_block:
            connection.close()


def stream(run_id: int, url: str, slot: Slot | None = None) -> Iterator[bytes]:
    """The same stream for WSGI, blocking (development servers and the test live server)."""
    heartbeat, max_s = _settings()
    client = redis.Redis.from_url(url, **STREAM_REDIS_TIMEOUTS)
    pubsub = client.pubsub()
    try:
        try:
            if slot is not None:
                live_slots.extend(client, slot, max_s)
            pubsub.subscribe(channel(run_id))
            yield PREAMBLE
            last: str | None = None
            deadline = time.monotonic() + max_s
            while time.monotonic() < deadline:
                snapshot = Run.objects.filter(pk=run_id).values(*SNAPSHOT_FIELDS).first()
                chunk, last, done = step(snapshot, last)
                if chunk:
                    yield chunk
                if done:
                    return
                if pubsub.get_message(ignore_subscribe_messages=True, timeout=heartbeat) is None:
                    yield HEARTBEAT
        except (RedisError, OSError) as exc:
            _gone(exc)
    finally:
        try:
            if slot is not None:
                live_slots.release(client, slot)
        except Exception as exc:  # noqa: BLE001 - the slot then frees itself at its time
            log.warning("live status: a closed stream's slot was not freed (%s)", exc)
        pubsub.close()
        client.close()
