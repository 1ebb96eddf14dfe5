"""The error policy: what an exception from an API call means for the run. One table, one place.

| error                                  | decision                                        |
|----------------------------------------|-------------------------------------------------|
| 429 rate limit                         | retry after ``retry-after-ms`` / ``Retry-After`` |
|                                        | (+0-20 %), up to 4x as many times in a row as   |
|                                        | other errors                                    |
| 429 ``insufficient_quota``             | fail a create or a submit now (no credit left); |
|                                        | a read is retried like a rate limit             |
| 5xx, 408, 409, timeout, connection     | retry with capped backoff and jitter; a read    |
|                                        | (a retrieve, a batch's poll) or a cancel up to  |
|                                        | 4x as many times in a row as a create           |
| 401 / 403                              | fail now: a key problem is not fixed by retrying |
| 404 (retrieve, cancel)                 | fail: the remote object is gone                 |
| 400 / 422 and other 4xx                | fail with the server's message                  |
| the thread runs another run (Assistants) | retry with the backoff, up to 4x as many times |
| anything unexpected                    | log with the run id, retry a bounded number     |

Retries are Celery countdowns decided here; the SDK never sleeps (``max_retries=0``). After
``RUNS_MAX_ERROR_RETRIES`` transient errors in a row (4x for a read) the run fails with the
last error.

Why a rate limit gets more attempts, spread out: a limit on tokens per minute (which
``RUNS_MAX_RPS`` does not model) throttles every waiting run at once, and ``Retry-After`` names
the same moment for all of them. Taken as is, they all came back together, were all throttled
again, and each failed at its ninth 429. The jitter (up to a fifth of the wait) spreads them,
and four times the attempts (32 by default) let a run wait four times as long; the count is
the run's one count of errors in a row, so other errors in the streak count towards it, and
the run's deadline still bounds the wait. A create refused because its Assistants thread runs
another run (``ThreadBusy``) gets the same allowance.

Why a read gets it too: a read that fails is the API's outage, not a fault of the run, and the
run goes on at OpenAI meanwhile. With the create's 8 tries (about 3 minutes of backoff) a
5-minute incident failed every run in flight, and cancelled it at OpenAI, paid for and likely
to end; with 32 (about half an hour) the run's deadline, or the batch's, ends it first. What
spends (a create, a submit) keeps the 8: each retry may be sent twice.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

import openai

from .redact import redact
from .schedule import Schedule

#: Backoff for transient errors: 1 s, x2, capped at 60 s, +-20 %.
ERROR_BACKOFF = Schedule(base=1.0, factor=2.0, cap=60.0, jitter=0.2)
MAX_RETRY_AFTER_S = 300.0
#: A rate-limited call, or a create waiting for its thread, may be retried this many times as
#: often as ``max_retries`` allows: both wait for someone else, not for a fault of theirs.
WAITING_RETRY_FACTOR = 4
_WAITING = frozenset({"rate_limited", "thread_busy"})
#: Transport errors raised before the request left this machine (the HTTP client's names).
_NOT_SENT = frozenset({"ConnectError", "ConnectTimeout"})


@dataclass(frozen=True)
class Decision:
    retry: bool
    code: str
    message: str
    countdown: float = 0.0
    #: For creates: the request may have reached the server (the answer was lost).
    outcome_unknown: bool = False


class ThreadBusy(Exception):
    """The remote thread runs another run (Assistants allows one at a time): retried with the
    backoff, so runs started together on one thread take their turns."""

    #: Calls the refused create made beyond itself: the read of the thread's active run.
    extra_api_calls = 1


def extra_api_calls(exc: BaseException) -> int:
    """API calls a failed call made beyond the one that failed (counted on the run): a
    ``ThreadBusy``'s read, or a failed read that followed a refused create."""
    extra = getattr(exc, "extra_api_calls", 0)
    return extra if isinstance(extra, int) else 0


def _retry_after(exc: openai.APIStatusError) -> float | None:
    headers = exc.response.headers
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            continue
        if math.isfinite(seconds) and seconds >= 0:
            return min(seconds, MAX_RETRY_AFTER_S)
    return None


def classify(
    exc: BaseException, attempt: int, max_retries: int | None = None, *, reading: bool = False
) -> Decision:
    """Decide for one failed call; ``attempt`` counts the transient errors in a row before it.

    With ``max_retries``, a transient error past that many in a row is final: the caller gets one
    answer ("retry after N s" or "give up with this code and message") and never re-checks.
    ``reading``: the call only read (a retrieve, a batch's poll), or is as safe to repeat and
    spends nothing (a cancel). An account out of credit fails what would spend, never a read: a
    response already running may still end, and giving it up would cancel it; for the same
    reason a read waits out an outage as long as a rate limit.
    """
    decision = _classify(exc, attempt, reading)
    # The message is the server's or an exception's text, and it is stored on the run, which the
    # API, the live stream and the admin show: a key in it (a 401 quotes the one it refused)
    # must not travel with it.
    decision = replace(decision, message=redact(decision.message))
    if decision.retry and max_retries is not None:
        # Not an unexpected error: it is more likely our bug than the API's outage.
        if decision.code in _WAITING or (reading and decision.code != "unexpected"):
            max_retries *= WAITING_RETRY_FACTOR
        if attempt >= max_retries:
            return replace(decision, retry=False, countdown=0.0)
    return decision


def _classify(exc: BaseException, attempt: int, reading: bool) -> Decision:
    backoff = ERROR_BACKOFF.delay(attempt)
    if isinstance(exc, ThreadBusy):
        return Decision(True, "thread_busy", str(exc), backoff)
    if isinstance(exc, openai.APITimeoutError):
        return Decision(True, "timeout", "the API did not answer in time", backoff, True)
    if isinstance(exc, openai.APIConnectionError):
        # A refused connection never carried the request; a broken one may have.
        sent = type(exc.__cause__).__name__ not in _NOT_SENT
        return Decision(True, "connection_error", f"cannot reach the API: {exc}", backoff, sent)
    if isinstance(exc, openai.RateLimitError):
        if getattr(exc, "code", None) == "insufficient_quota":
            refused = f"OpenAI refused: {exc.message}"
            if reading:  # waited out like a rate limit, on the backoff
                return Decision(True, "rate_limited", refused, backoff)
            return Decision(False, "insufficient_quota", refused)
        wait = _retry_after(exc)
        if wait is not None:
            wait = min(wait * random.uniform(1.0, 1.2), MAX_RETRY_AFTER_S)
        return Decision(True, "rate_limited", exc.message, wait if wait is not None else backoff)
    if isinstance(exc, openai.InternalServerError):
        return Decision(True, f"http_{exc.status_code}", exc.message, backoff)
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return Decision(
            False, f"http_{exc.status_code}", f"OpenAI refused the credentials: {exc.message}"
        )
    if isinstance(exc, openai.NotFoundError):
        return Decision(False, "not_found", f"the remote object was not found: {exc.message}")
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code == 409:
            return Decision(True, "conflict", exc.message, backoff)
        if exc.status_code == 408:  # a gateway's request timeout: retried, as the SDK would
            return Decision(True, f"http_{exc.status_code}", exc.message, backoff)
        return Decision(False, f"http_{exc.status_code}", exc.message)
    return Decision(True, "unexpected", f"{type(exc).__name__}: {exc}", backoff)
