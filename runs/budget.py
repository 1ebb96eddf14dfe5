"""A poll budget shared by every worker: a Redis token bucket, refilled at ``RUNS_MAX_RPS``.

One Lua script does refill-and-take atomically, so any number of worker processes and threads
share one budget without a lock. Creates have priority over polls: a poll may only take a token
while more than a reserve is left, so when the bucket runs low the remaining tokens go to
creates (a new run waiting is worse than a running one polled a little later). A call over
budget is *deferred* by the returned number of seconds, never dropped.

Deferred calls queue, in turn, creates and polls alike (a poll's slot leaves the reserve).
Each is given its own slot, one refill interval at least after the last slot handed out, so a
thousand calls deferred together come back one by one as tokens refill and nearly every one
finds its token: about one extra execution per deferred call (``python -m bench.budget_herd``).
Told only "a token is due in 0.02 s", all of them would come back together, one would get it
and the rest be deferred again, about N²/2 executions to drain N. A deferred call comes back as
any other (its task carries nothing), so a call arriving meanwhile may take a token meant for a
queued one (a create may take the reserve); that one is queued again at the end, one execution
more, never a lost call.

Time is Redis's own clock (``TIME``), so workers whose clocks disagree share one refill.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import lru_cache

import redis

from . import metrics
from .breaker import Breaker
from .conf import default_redis_url, redis_url_or_none, settings

log = logging.getLogger(__name__)

# KEYS[1] bucket hash; ARGV: rate/s, burst, reserve (tokens the call must leave: a poll's),
# now (s, or "" for Redis's clock), the longest wait a slot may be handed for (s), and "1" to
# queue (anything else: only try). Returns the wait in milliseconds (0: a token was taken). The
# hash holds the tokens at time ``at``; the queue's last slot, the tokens its call leaves, and
# the rate the queue was made at.
_TAKE = """
local rate, burst, reserve = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now, longest, queue = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6] == '1'
if now == nil then
  redis.replicate_commands()  -- TIME before a write: replicate effects (a no-op since 7.0)
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at', 'last', 'left', 'rate')
local tokens, at = tonumber(state[1]), tonumber(state[2])
local last, left = tonumber(state[3]) or 0, tonumber(state[4]) or 0
if tokens == nil then tokens, at = burst, now end
-- A queue made at another rate says nothing at this one.
if tonumber(state[5]) ~= rate then last, left = 0, 0 end
-- Never move the refill's time back (a clock stepped back, or a caller's clock behind).
now = math.max(now, at)
local refilled = tokens + (now - at) * rate
if refilled - burst > rate then
  -- The bucket stayed full for over a second: nobody took its refill, so the calls queued for
  -- it did not come back (runs that ended, starts another task made). Their slots are given
  -- again; a queued call that does come back finds a token, or queues once more. (A call a
  -- little late overflows a bucket of one token too: that is not a queue gone.)
  last, left = 0, 0
end
tokens = math.min(burst, refilled)
local need = 1 + reserve
local wait = 0
-- The tolerance absorbs rounding: a call back at its slot finds its token to the last bit.
if tokens + 1e-6 >= need then
  tokens = tokens - 1
else
  -- The first moment its token is there: now's tokens refilled to what it needs, and after
  -- every call queued before it took its own (one refill interval at least after the last of
  -- them, so none comes back at the same moment).
  local slot, level = now + (need - tokens) / rate, need
  local queued = last + math.max(need - left, 1) / rate
  if queued > slot then slot, level = queued, math.max(need, left + 1) end
  if slot - now > longest then
    -- Further than a countdown reaches: the call comes back before its slot and would ask
    -- again. It holds none, and asks again then.
    wait = longest * 1000
  else
    if queue then last, left = slot, math.min(level, burst) - 1 end
    wait = (slot - now) * 1000 - 1e-6  -- not a ms more for a float's last bit
  end
  wait = math.max(1, math.ceil(wait))  -- never 0, which says "go"
end
local function num(x) return string.format('%.17g', x) end
redis.call('HSET', KEYS[1], 'tokens', num(tokens), 'at', num(now), 'last', num(last),
  'left', num(left), 'rate', num(rate))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst / rate + math.max(last, now) - now) * 1000) + 1000)
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
#: The bucket's clock: None for Redis's own. Tests and the herd bench freeze one, to make every
#: grant and wait exact.
clock: Callable[[], float] | None = None


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


def take(kind: str, *, queue: bool = True) -> float:
    """Take one API call from the budget: 0.0 to go now, else the seconds to defer it.

    ``kind`` is ``"create"`` (priority) or ``"poll"``. A deferred call is given a slot in the
    queue and must come back after the returned wait to find its token; with ``queue=False``
    (a caller that will not come back itself, e.g. a start it hands back) it only tries. A
    wait never exceeds ``RUNS_MAX_COUNTDOWN_S``: a call that far back holds no slot and asks
    again when it comes back. With ``RUNS_MAX_RPS = 0`` there is no budget.

    If Redis cannot be reached (or none is configured) the call goes ahead: the budget protects
    the account's rate limit, and a 429 is handled by the error policy anyway; nor is it asked
    again for ``breaker.PAUSE_S``, so a Redis that hangs costs one timeout.
    """
    rate = float(settings.RUNS_MAX_RPS or 0)
    if rate <= 0 or paused.is_open():
        return 0.0
    # Two tokens at least: a call that comes back a little after its slot must not find the
    # bucket full, its refill meanwhile lost, and the call behind it short of a token.
    burst = max(2.0, rate * settings.RUNS_BUDGET_BURST_S)
    reserve = 0.0 if kind == "create" else burst * POLL_RESERVE_SHARE
    try:
        now = "" if clock is None else clock()
        longest = float(settings.RUNS_MAX_COUNTDOWN_S)
        args = [rate, burst, reserve, now, longest, "1" if queue else "0"]
        wait_ms = _script()(keys=[KEY], args=args)
    except (redis.RedisError, ValueError) as exc:
        paused.trip()
        _warn(exc)
        return 0.0
    wait = int(wait_ms) / 1000.0
    metrics.observe_budget_wait(kind, wait)
    return wait
