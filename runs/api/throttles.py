"""Rate limits per API client, on django-ninja's throttling (``ninja.throttling``).

Three buckets per client, rates from ``RUNS_API_THROTTLE_RATES`` (read live, so a deploy or a
test changes them without a restart): ``read`` (every GET, and each live-status stream opened),
``write`` (threads, messages, cancels, tool outputs) and ``start`` (``POST /runs`` and retries:
each one costs money at OpenAI). A rate is ninja's ``"<count>/<period>"`` (``s``, ``min``,
``h``, ``day``, or e.g. ``"10/5m"``); ``None`` turns the bucket off.

The key is the client (``str(request.auth)`` is ``client:<name>``), so rotating a token or
giving a client two tokens does not double its allowance.

Why windows with counters and not ninja's sliding history: ninja reads a list of timestamps,
appends and writes it back, so two web processes checking at once both pass and one overwrites
the other's entry. Here a client's window starts at its first request (an ``anchor`` key holding
that time, written with ``cache.add``, which only the first writer wins) and lasts one period;
the window's requests are one counter, created with ``cache.add`` and raised with
``cache.incr``. All three are single atomic operations on Redis, Memcached and the local-memory
cache, so any number of processes and threads count against one limit without a lock. The price
is that of fixed windows: a client may fit up to twice its rate into the moment around the end
of one window and the start of the next. The keys live in Django's cache named by
``RUNS_API_THROTTLE_CACHE``; with a local-memory cache each web process counts on its own, so a
deployment with several processes points it at Redis (the demo does: ``project/settings.py``).
The database cache's ``incr`` is not atomic: do not use it here. A cache that does not answer
(Redis down) lets requests through and logs a warning at most once a minute: the throttle
protects the service, it must not become the reason it is down.

A throttled request is a 429 with ``Retry-After``: whole seconds until its window ends (at
least 1). ninja adds the header from ``wait()``; the wait of one check is kept per thread, as
ninja shares one throttle object between all requests and a threaded server checks several at
once.
"""

from __future__ import annotations

import logging
import math
import threading
import time

from django.core.cache import BaseCache, caches
from django.http import HttpRequest
from ninja.throttling import SimpleRateThrottle

from ..conf import DEFAULTS, settings

log = logging.getLogger(__name__)

#: Seconds a window's counter outlives its anchor, so the anchor always goes first.
KEY_SLACK_S = 5
#: While the cache does not answer, warn at most this often.
WARN_EVERY_S = 60.0
_last_warning = -WARN_EVERY_S


def rate_for(bucket: str) -> str | None:
    """The rate of ``bucket``: the setting's, else the default (a partial setting is fine)."""
    rates = {**DEFAULTS["RUNS_API_THROTTLE_RATES"], **settings.RUNS_API_THROTTLE_RATES}
    return rates.get(bucket)


class ClientRateThrottle(SimpleRateThrottle):
    """At most ``count`` requests of one bucket per client per window of the rate's period."""

    cache_format = "runs_api_throttle_%(scope)s_%(ident)s"

    def __init__(self, bucket: str) -> None:
        # No super().__init__(): it parses the rate once, and ours is read at each request.
        self.scope = bucket
        self._state = threading.local()

    def allow_request(self, request: HttpRequest) -> bool:
        self._state.wait = None
        rate = rate_for(self.scope)
        if rate is None or getattr(request, "auth", None) is None:
            return True
        return self.take(str(request.auth), rate)

    def take(self, ident: str, rate: str) -> bool:
        """Count one request of ``ident``: False when its window is full (``wait()`` then says
        how long until the window ends). True when the cache does not answer."""
        count, duration = self.parse_rate(rate)
        assert count is not None and duration is not None
        cache = caches[settings.RUNS_API_THROTTLE_CACHE]  # a wrong name is an error, not open
        key = self.cache_format % {"scope": self.scope, "ident": ident}
        now = self.timer()
        try:
            since, used = _count(cache, key, now, duration)
        except Exception as exc:  # noqa: BLE001 - fail open: see the module's docstring
            _warn(exc)
            return True
        if used <= count:
            return True
        self._state.wait = max(1, math.ceil(since + duration - now))
        return False

    def retry_after(self, ident: str) -> int | None:
        """For callers outside ninja (the live-status view): count one request of ``ident``;
        None when it may go on, else the whole seconds until it may."""
        rate = rate_for(self.scope)
        if rate is None or self.take(ident, rate):
            return None
        return int(self._state.wait)

    def wait(self) -> float | None:
        return getattr(self._state, "wait", None)


def _count(cache: BaseCache, key: str, now: float, duration: int) -> tuple[float, int]:
    """Count one request in ``key``'s current window: (when the window opened, requests in it)."""
    cache.add(f"{key}_anchor", now, duration)  # a no-op unless this opens the window
    since = cache.get(f"{key}_anchor", now)  # None only if it just expired: a new window
    counter = f"{key}_{int(since * 1000)}"
    cache.add(counter, 0, duration + KEY_SLACK_S)
    try:
        return since, cache.incr(counter)
    except ValueError:  # expired between add and incr: the window is over, this opens one
        cache.set(counter, 1, duration + KEY_SLACK_S)
        return since, 1


def _warn(exc: Exception) -> None:
    global _last_warning
    if time.monotonic() - _last_warning > WARN_EVERY_S:  # one line a minute, not per request
        _last_warning = time.monotonic()
        log.warning("API throttles: not enforced, their cache does not answer (%s)", exc)


READ = ClientRateThrottle("read")
WRITE = ClientRateThrottle("write")
START = ClientRateThrottle("start")
