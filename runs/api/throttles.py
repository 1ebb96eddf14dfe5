"""Rate limits per API client, on django-ninja's throttling (``ninja.throttling``).

Three buckets per client, rates from ``RUNS_API_THROTTLE_RATES`` (read live, so a deploy or a
test changes them without a restart): ``read`` (every GET), ``write`` (threads, messages,
cancels, tool outputs) and ``start`` (``POST /runs`` and retries: each one costs money at
OpenAI). A rate is ninja's ``"<count>/<period>"`` (``s``, ``min``, ``h``, ``day``, or e.g.
``"10/5m"``); ``None`` turns the bucket off.

The key is the client (``str(request.auth)`` is ``client:<name>``), so rotating a token or
giving a client two tokens does not double its allowance. The history lives in Django's cache
named by ``RUNS_API_THROTTLE_CACHE``: with the default local-memory cache each web process
counts on its own; point it at a shared cache (Redis) for one limit across processes.

A throttled request is a 429 with ``Retry-After`` (whole seconds until the oldest request in the
window leaves it). ninja adds the header from ``wait()``; ours always has an answer, where
ninja's may give none. The state of one check is kept per thread: ninja shares one throttle
object between all requests, and a threaded server checks several at once.
"""

from __future__ import annotations

import math
import threading

from django.core.cache import caches
from django.http import HttpRequest
from ninja.throttling import SimpleRateThrottle

from ..conf import DEFAULTS, settings


def rate_for(bucket: str) -> str | None:
    """The rate of ``bucket``: the setting's, else the default (a partial setting is fine)."""
    rates = {**DEFAULTS["RUNS_API_THROTTLE_RATES"], **settings.RUNS_API_THROTTLE_RATES}
    return rates.get(bucket)


class ClientRateThrottle(SimpleRateThrottle):
    """At most ``rate`` requests of one bucket per client in a sliding window."""

    cache_format = "runs_api_throttle_%(scope)s_%(ident)s"

    def __init__(self, bucket: str) -> None:
        # No super().__init__(): it parses the rate once, and ours is read at each request.
        self.scope = bucket
        self._state = threading.local()

    def allow_request(self, request: HttpRequest) -> bool:
        rate = rate_for(self.scope)
        if rate is None or getattr(request, "auth", None) is None:
            return True
        count, duration = self.parse_rate(rate)
        assert count is not None and duration is not None
        key = self.cache_format % {"scope": self.scope, "ident": str(request.auth)}
        cache = caches[settings.RUNS_API_THROTTLE_CACHE]
        now = self.timer()
        history = [at for at in cache.get(key, []) if at > now - duration]
        if len(history) >= count:
            # The oldest request still in the window: when it leaves, one more may come.
            self._state.wait = max(1, math.ceil(history[-1] + duration - now))
            return False
        cache.set(key, [now, *history], duration)
        return True

    def wait(self) -> float | None:
        return getattr(self._state, "wait", None)


READ = ClientRateThrottle("read")
WRITE = ClientRateThrottle("write")
START = ClientRateThrottle("start")
