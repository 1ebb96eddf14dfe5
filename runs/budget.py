"""A poll budget shared by every worker: a Redis token bucket, refilled at ``RUNS_MAX_RPS``.

One Lua script does refill-and-take atomically, so any number of worker processes and threads
share one budget without a lock. Creates have priority over polls: a poll may only take a token
while more than a reserve is left, so when the bucket runs low the remaining tokens go to
creates (a new run waiting is worse than a running one polled a little later). A call over
budget is *deferred* by the returned number of seconds, never dropped.
"""

from __future__ import annotations

import logging
import time
from functools import lru_cache

import redis

from . import metrics
from .breaker import Breaker
from .conf import default_redis_url, redis_url_or_none, settings

log = logging.getLogger(__name__)

# KEYS[1] bucket hash; ARGV: rate/s, burst, reserve (tokens a poll must leave), now (s).
# Returns the wait in milliseconds (0: a token was taken).
_TAKE = """
local rate, burst, reserve, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
    tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]), tonumber(state[2])
if tokens == nil then tokens, at = burst, now end
-- Each worker passes its own clock. One that runs behind must not move the refill's time back:
-- the next caller whose clock runs ahead would be refilled for time that never passed.
now = math.max(now, at)
tokens = math.min(burst, tokens + (now - at) * rate)
local wait = 0
if tokens >= 1 + reserve then
  tokens = tokens - 1
else
  wait = math.ceil((1 + reserve - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return wait
"""

KEY = "runs:budget"
#: Share of the bucket kept for creates.
POLL_RESERVE_SHARE = 0.2


#: While the budget's Redis is unreachable or unusable, warn at most this often.
WARN_EVERY_S = 60.0
_last_warning = -WARN_EVERY_S


def redis_url() -> str | None:
    """The budget's Redis: ``RUNS_BUDGET_REDIS_URL``, else ``conf.default_redis_url()``.

    An AMQP broker is never handed to the Redis client (it would raise ``ValueError`` on every
    call); the system check (``runs.checks``) reports the missing Redis at start-up instead.
    """
    explicit = settings.RUNS_BUDGET_REDIS_URL
    if explicit:
        return redis_url_or_none(explicit)
    return default_redis_url()


#: Seconds a take may wait for Redis; then the call goes ahead and the budget pauses.
TIMEOUT_S = 1.0
#: Skips the budget for a few seconds after its Redis failed (``breaker``).
paused = Breaker()


@lru_cache(maxsize=1)
def _script() -> redis.commands.core.Script:
    url = redis_url()
    if url is None:
        raise ValueError("the request budget needs a Redis URL (RUNS_BUDGET_REDIS_URL)")
    client = redis.Redis.from_url(url, socket_connect_timeout=TIMEOUT_S, socket_timeout=TIMEOUT_S)
    return client.register_script(_TAKE)


def _warn(exc: Exception) -> None:
    global _last_warning
    if time.monotonic() - _last_warning > WARN_EVERY_S:  # one line a minute, not one per call
        _last_warning = time.monotonic()
        log.warning("request budget: not enforced, its Redis is not usable (%s)", exc)


def reset_connection() -> None:
    """Forget the cached connection and any pause (tests point the budget at another Redis)."""
    _script.cache_clear()
    paused.reset()


def take(kind: str) -> float:
    """Take one API call from the budget: 0.0 to go now, else the seconds to defer it.

    ``kind`` is ``"create"`` (priority) or ``"poll"``. With ``RUNS_MAX_RPS = 0`` there is no
    budget. If Redis cannot be reached (or none is configured) the call goes ahead: the
    budget protects the account's rate limit, and a 429 is handled by the error policy anyway;
    nor is it asked again for ``breaker.PAUSE_S``, so a Redis that hangs costs one timeout.
    """
    rate = float(settings.RUNS_MAX_RPS or 0)
    if rate <= 0 or paused.is_open():
        return 0.0
    burst = max(1.0, rate * settings.RUNS_BUDGET_BURST_S)
    # A poll must leave the reserve, and still find a whole token in a bucket of ``burst``: with
    # a bucket under 1.25 tokens a fixed share would leave polls no token ever.
    reserve = 0.0 if kind == "create" else min(burst * POLL_RESERVE_SHARE, burst - 1.0)
    try:
        wait_ms = _script()(keys=[KEY], args=[rate, burst, reserve, time.time()])
    except (redis.RedisError, ValueError) as exc:
        paused.trip()
        _warn(exc)
        return 0.0
    wait = int(wait_ms) / 1000.0
    metrics.observe_budget_wait(kind, wait)
    return wait
