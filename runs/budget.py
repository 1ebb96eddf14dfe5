"""A poll budget shared by every worker: a Redis token bucket, refilled at ``RUNS_MAX_RPS``.

One Lua script does refill-and-take atomically, so any number of worker processes and threads
share one budget without a lock. Creates have priority over polls: a poll may only take a token
while more than a reserve is left, so when the bucket runs low the remaining tokens go to
creates (a new run waiting is worse than a running one polled a little later). A call over
budget is *deferred* by the returned number of seconds, never dropped.

Deferred calls queue. Each is given its own slot, one refill interval after the last slot
handed out to its kind (polls also behind every deferred create, their reserve refilled), so a
thousand calls deferred together come back one by one as tokens refill and nearly every one
finds its token: about one extra execution per deferred call (``python -m bench.budget_herd``).
Told only "a token is due in 0.02 s", all of them would come back together, one would get it
and the rest be deferred again, about N²/2 executions to drain N. A deferred call comes back as
any other (its task carries nothing), so a call arriving meanwhile may take a token meant for a
queued one, and a create deferred after a poll goes before it: that poll is queued again at the
end, one execution more and the queue's wait again, never a lost call. Creates keep priority
that way, as they do over a bucket running low.

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

# KEYS[1] bucket hash; ARGV: rate/s, burst, reserve (tokens a poll must leave), now (s, or "" for
# Redis's clock), kind ("create" or "poll"), the longest wait a slot may be handed for (s), and
# "1" to queue (anything else: only try). Returns the wait in milliseconds (0: a token was
# taken). The hash holds the tokens at time ``at``, the last slot handed to each kind, and the
# rate those slots were handed at.
_TAKE = """
local rate, burst, reserve = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now, kind, longest, queue = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6]), ARGV[7] == '1'
if now == nil then
  redis.replicate_commands()  -- TIME before a write: replicate effects (a no-op since 7.0)
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at', 'create', 'poll', 'rate')
local tokens, at = tonumber(state[1]), tonumber(state[2])
local line = {create = tonumber(state[3]) or 0, poll = tonumber(state[4]) or 0}
if tokens == nil then tokens, at = burst, now end
-- Slots handed at another rate say nothing at this one.
if tonumber(state[5]) ~= rate then line.create, line.poll = 0, 0 end
-- Never move the refill's time back (a clock stepped back, or a caller's clock behind).
now = math.max(now, at)
local refilled = tokens + (now - at) * rate
if refilled - burst > rate then
  -- The bucket stayed full for over a second: nobody took its refill, so the calls queued for
  -- it did not come back (runs that ended, starts another task made). Their slots are given
  -- again; a queued call that does come back finds a token, or queues once more. (Not at the
  -- first overflow: a call back a little late is lateness, not a queue gone.)
  line.create, line.poll = 0, 0
end
tokens = math.min(burst, refilled)
local need = 1 + reserve
local wait = 0
-- The tolerance absorbs rounding (10 us of refill: a Unix time's last bit is 0.24 us): a call
-- back at its slot finds its token.
if tokens + 1e-5 * math.max(1, rate) >= need then
  tokens = tokens - 1
else
  -- The next free slot of this kind's line: one refill after its last slot (a call back at
  -- that slot takes one token). A poll also waits for every create deferred so far, and for
  -- its reserve to refill after the last of them. A create deferred later may still take a
  -- poll's slot: that poll is deferred once more, as creates go first.
  local slot = math.max(now + (need - tokens) / rate, line[kind] + 1 / rate)
  if kind == 'poll' then slot = math.max(slot, line.create + need / rate) end
  if slot - now > longest then
    -- Further than a countdown reaches: the call comes back before its slot and would ask
    -- again. It holds none, and asks again then.
    wait = longest * 1000
  else
    if queue then line[kind] = slot end
    wait = (slot - now) * 1000 - 1e-6  -- not a ms more for a float's last bit
  end
  wait = math.max(1, math.ceil(wait))  -- never 0, which says "go"
end
local function num(x) return string.format('%.17g', x) end
redis.call('HSET', KEYS[1], 'tokens', num(tokens), 'at', num(now), 'create', num(line.create),
  'poll', num(line.poll), 'rate', num(rate))
local last = math.max(line.create, line.poll, now)
redis.call('PEXPIRE', KEYS[1], math.ceil((burst / rate + last - now) * 1000) + 1000)
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
    # Two tokens at least: with one, a call back a little after its slot found the bucket full,
    # the refill meanwhile lost, and the call behind it short of its token (bench.budget_herd at
    # 1 call a second). A poll's reserve (a fifth) then leaves it a whole token too.
    burst = max(2.0, rate * settings.RUNS_BUDGET_BURST_S)
    reserve = 0.0 if kind == "create" else burst * POLL_RESERVE_SHARE
    try:
        now = "" if clock is None else clock()
        longest = float(settings.RUNS_MAX_COUNTDOWN_S)
        args = [rate, burst, reserve, now, kind, longest, "1" if queue else "0"]
        wait_ms = _script()(keys=[KEY], args=args)
    except (redis.RedisError, ValueError) as exc:
        paused.trip()
        _warn(exc)
        return 0.0
    wait = int(wait_ms) / 1000.0
    metrics.observe_budget_wait(kind, wait)
    return wait
