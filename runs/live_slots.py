"""How many live-status streams one client holds open at once: a cap, counted in Redis.

Why a cap: every open stream holds a Redis connection (its subscription) for up to
``RUNS_SSE_MAX_S``, and under WSGI a thread too. The ``read`` throttle limits how fast a client
opens streams; it does not stop a client from piling up slow ones, ten a minute for an hour.
``RUNS_SSE_MAX_PER_CLIENT`` does (0: no cap).

How: one sorted set per client in the live-status Redis (every web process sees it), one member
per open stream, scored by the time by which that stream has surely ended. Opening is one Lua
script, so two processes cannot both take the last slot: drop members past their time, refuse
when the set is full, else add ours. Closing removes the member. A stream whose process died
without closing it is forgotten once its time passes, so a crash locks nobody out for longer
than one stream's life, and a slot taken for a stream that never started (the client left
before the response began) counts only ``MARGIN_S``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import redis
import redis.asyncio as aredis

#: KEYS[1] the client's set; ARGV: now (ms), this stream's end (ms), the cap, the member.
#: Returns 1 when the stream may open (and is counted), 0 when the client is at its cap. The set
#: lives as long as its last end: a new slot's end (``START_HOLD_S``) may come before the others'.
_OPEN = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
return 1
"""

#: KEYS[1] the client's set; ARGV: the stream's new end (ms), the member. Moves a counted
#: stream's end (never re-adds one already dropped) and keeps the set as long as its last end.
_EXTEND = """
if redis.call('ZADD', KEYS[1], 'XX', 'CH', ARGV[1], ARGV[2]) == 0 then return 0 end
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
return 1
"""

#: Past its ``RUNS_SSE_MAX_S`` a stream still finishes its last wait (a heartbeat) and query.
MARGIN_S = 30.0
#: How long a slot counts before its stream has started. The view takes it, then Django sends
#: the headers and only then starts the stream, which extends it (``aextend``); a client gone in
#: between cancels the request before the stream's ``finally`` exists, so nobody releases it.
START_HOLD_S = 0.0


@dataclass(frozen=True)
class Slot:
    """One open stream, counted against its client until ``release``."""

    key: str
    member: str


def key(ident: str) -> str:
    return f"runs:sse:open:{ident}"


async def acquire(url: str, ident: str, *, cap: int, hold_s: float) -> Slot | None:
    """Count a new stream of ``ident``, or None when it already has ``cap`` open.

    ``hold_s``: the longest the stream may stay open; it counts no longer than that (plus
    ``MARGIN_S``) even if nobody releases it.
    """
    now_ms = int(time.time() * 1000)
    until_ms = now_ms + int((hold_s + MARGIN_S) * 1000)
    slot = Slot(key(ident), uuid.uuid4().hex)
    client = aredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        opened = await client.eval(_OPEN, 1, slot.key, now_ms, until_ms, cap, slot.member)
    finally:
        await client.aclose()
    return slot if opened else None


def _until_ms(hold_s: float) -> int:
    return int((time.time() + hold_s + MARGIN_S) * 1000)


async def aextend(client: aredis.Redis, slot: Slot, hold_s: float) -> None:
    """The stream has started: count it for its whole life, ``hold_s`` (plus ``MARGIN_S``)."""
    await client.eval(_EXTEND, 1, slot.key, _until_ms(hold_s), slot.member)


def extend(client: redis.Redis, slot: Slot, hold_s: float) -> None:
    """``aextend`` for the blocking (WSGI) stream."""
    client.eval(_EXTEND, 1, slot.key, _until_ms(hold_s), slot.member)


async def arelease(client: aredis.Redis, slot: Slot) -> None:
    """The stream has ended: its client may open another (async, on the stream's connection)."""
    await client.zrem(slot.key, slot.member)


def release(client: redis.Redis, slot: Slot) -> None:
    """``arelease`` for the blocking (WSGI) stream."""
    client.zrem(slot.key, slot.member)


def open_count(client: redis.Redis, ident: str) -> int:
    """Streams ``ident`` holds open now (for tests and operators)."""
    return int(client.zcount(key(ident), int(time.time() * 1000), "+inf"))
