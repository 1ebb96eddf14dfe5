"""Every setting the app reads, with its default: the one place ``runs`` looks at Django settings.

django-anymail's ``get_anymail_setting`` is the model: a host project sets only what it must (an
API key, a webhook secret) and everything else has a documented default here. Modules of ``runs``
import ``settings`` from this module instead of ``django.conf``::

    from .conf import settings
    settings.RUNS_POLL_BASE_S      # the host's value if it set one, else the default below

Reads are live (never cached), so ``override_settings`` and pytest-django's ``settings`` fixture
work as usual. A name that is not listed here is an ``AttributeError``: a typo fails loudly
instead of silently reading a default. Secrets default to the process environment, like the
``openai`` SDK does, and are never logged.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings as django_settings

#: name -> default, grouped as in ``.env.example``.
DEFAULTS: dict[str, Any] = {
    # OpenAI
    "OPENAI_API_KEY": None,  # None: the environment's OPENAI_API_KEY (see ``_ENV``)
    "OPENAI_BASE_URL": None,
    "OPENAI_WEBHOOK_SECRET": None,
    # Secrets that still verify during a rotation: comma-separated (or a list), like Django's
    # SECRET_KEY_FALLBACKS. See runs/intake/secrets.py.
    "OPENAI_WEBHOOK_SECRET_FALLBACKS": None,
    "OPENAI_ASSISTANT_ID": None,
    # Total seconds one API call may take (retrieve, cancel) / a create or submit (which may
    # be doubled by a retry, so it gets more patience). Enforced by our own transport, not
    # only by httpx's per-phase timeouts: see ``client.py``.
    "OPENAI_TIMEOUT_S": 10.0,
    "OPENAI_CREATE_TIMEOUT_S": 30.0,
    # What a run gets when create_run does not say
    "RUNS_BACKEND": "responses",
    "RUNS_STRATEGY": "poll",
    "RUNS_DEFAULT_MODEL": "gpt-4.1-mini",
    "RUNS_DEADLINE_S": 600.0,
    # Poll schedule (strategy "poll") and the safety net (strategy "webhook")
    "RUNS_POLL_BASE_S": 0.5,
    "RUNS_POLL_FACTOR": 1.5,
    "RUNS_POLL_CAP_S": 5.0,
    "RUNS_POLL_JITTER": 0.1,
    "RUNS_SAFETY_NET_BASE_S": 30.0,
    "RUNS_SAFETY_NET_FACTOR": 2.0,
    "RUNS_SAFETY_NET_CAP_S": 300.0,
    # The longest single countdown handed to the broker. A later poll is stored as
    # next_poll_at and reached by hops of at most this long (Redis redelivers unacked tasks
    # after its visibility timeout, RabbitMQ's consumer_timeout is 15-30 min).
    "RUNS_MAX_COUNTDOWN_S": 300.0,
    # Polling mode (docs/architecture.md, "Batched polling"): "per_run" (a countdown task per
    # run), "batched" (runs.poll_due, every RUNS_POLL_DUE_INTERVAL_S from beat, claims up to
    # RUNS_POLL_BATCH due runs in one statement, retrieves them on RUNS_POLL_CONCURRENCY
    # threads and holds them for RUNS_POLL_LEASE_S meanwhile: a dead batch's runs are due again
    # after it) or "auto" (per run until a run's poll runs late, RUNS_POLL_AUTO_LATE_S; then
    # that run's polls are batched).
    # "per_run" here, for a host that has not set it: it needs beat only for recovery, while
    # "auto" and "batched" need beat's runs.poll_due to poll at all (the demo project, the
    # compose file and docs/operations.md set "auto", with beat).
    "RUNS_POLL_MODE": "per_run",
    # RUNS_POLL_MODE (or RUNS_SAFETY_NET_MODE) = "auto": countdowns per run, until a run's poll
    # runs more than this late; that run's later polls are then left to runs.poll_due
    # (runs/poll_modes.py).
    "RUNS_POLL_AUTO_LATE_S": 0.5,
    # The same choice for runs tracked by webhook, whose polls are only a safety net for a lost
    # event: "batched" (the default) stores each one's due time for runs.poll_due, so a start
    # publishes no countdown task and no worker holds one per run; "per_run" arms a countdown
    # task per run as RUNS_POLL_MODE = "per_run" does (docs/architecture.md, "Batched polling").
    "RUNS_SAFETY_NET_MODE": "batched",
    # Whether each start_run leaves a result row (the remote id and status it got) in the
    # result backend; False skips the row and its writes (docs/celery.md, "Settings").
    "RUNS_KEEP_START_RESULTS": True,
    # Chunked starts (runs/engine/starts.py, docs/architecture.md): above 1, a start_run also
    # creates up to RUNS_START_CHUNK - 1 other runs waiting to start, in waves of
    # RUNS_START_CONCURRENCY (creates on as many threads, then one write for the wave). Off by
    # default: a worker killed mid-wave may repeat every create then in flight, not just one.
    "RUNS_START_CHUNK": 1,
    "RUNS_START_CONCURRENCY": 8,
    "RUNS_POLL_BATCH": 200,
    "RUNS_POLL_CONCURRENCY": 16,
    "RUNS_POLL_LEASE_S": 30.0,
    "RUNS_POLL_DUE_INTERVAL_S": 0.5,
    # Cheap and long runs (docs/modes.md). RUNS_TIME_SCALE compresses every window-derived
    # wait (a 2h/8h window's polls and deadline, a batch's 24 h): 1.0 is the real clock; the
    # simulator reads the same setting (its --time-scale), so an 8h window is tested in seconds.
    "RUNS_TIME_SCALE": 1.0,
    # At most this many retrieves over a 2h/8h window by polling (the safety net of a webhook
    # run spends fewer); the run's deadline is its window plus RUNS_WINDOW_GRACE_S (scaled).
    "RUNS_WINDOW_MAX_POLLS": 20,
    "RUNS_WINDOW_GRACE_S": 1800.0,
    # Prices (runs/pricing.py): the shipped table, with entries here added or replacing its own
    # (model -> {"input": ..., "cached_input": ..., "output": ...} in USD per 1M tokens).
    "RUNS_PRICES": {},
    # Spend limits (runs/spend.py): metadata key -> {"usd": "10.00", "period": "day"|"month"|...}
    "RUNS_SPEND_LIMITS": {},
    # Batches (runs/engine/batch_lifecycle.py): most runs in one batch (the API takes 50,000)
    "RUNS_BATCH_MAX_RUNS": 50000,
    # A batch's poll schedule (strategy "poll"): base x factor per poll up to the cap, and the
    # safety net of a batch tracked by batch.* webhooks; every figure times RUNS_TIME_SCALE,
    # since batches run on the 24 h window's clock (docs/batches.md).
    "RUNS_BATCH_POLL_BASE_S": 30.0,
    "RUNS_BATCH_POLL_FACTOR": 1.5,
    "RUNS_BATCH_POLL_CAP_S": 600.0,
    "RUNS_BATCH_SAFETY_NET_BASE_S": 3600.0,
    "RUNS_BATCH_SAFETY_NET_CAP_S": 4 * 3600.0,
    # We give up on a batch at its create at OpenAI + 24 h + this grace (scaled): cancelled, open
    # runs expired; one OpenAI reports finalizing or cancelling gets this grace once more.
    "RUNS_BATCH_GRACE_S": 3600.0,
    # Runs settled per transaction at a batch's end (set-based statements, a few per chunk).
    "RUNS_BATCH_SETTLE_CHUNK": 500,
    # Pages of 100 recent batches a retried submit searches for the batch a lost answer created.
    "RUNS_BATCH_FIND_PAGES": 3,
    # Total seconds one transfer of a batch file may take (the input's upload, each download of
    # an output or error file: up to 200 MB), enforced like OPENAI_TIMEOUT_S (client.py). A
    # submit claim and a poll's lease last long enough for these transfers (batch_writer.py).
    "RUNS_BATCH_FILE_TIMEOUT_S": 600.0,
    # Errors and the shared request budget
    "RUNS_MAX_ERROR_RETRIES": 8,
    "RUNS_MAX_RPS": 0.0,
    "RUNS_BUDGET_BURST_S": 1.0,
    "RUNS_BUDGET_REDIS_URL": "",  # "": REDIS_URL, else the broker (``default_redis_url``)
    # Queues by kind of task (docs/celery.md, "Queues and routing"): kind -> queue name, None
    # for Celery's default queue. "wake" is a poll someone is waiting for (a webhook, Poll now,
    # the sweep) and a cancel; "poll" a scheduled one; "tool" a round's tools and its submit.
    "RUNS_QUEUES": {"start": None, "poll": None, "wake": None, "tool": None},
    # Recovery sweep (Celery beat). RUNS_BEAT_SCHEDULE False: the app adds no "runs-sweep"
    # entry to the host's beat schedule (runs/beat.py).
    "RUNS_BEAT_SCHEDULE": True,
    "RUNS_SWEEP_INTERVAL_S": 5.0,
    "RUNS_SWEEP_GRACE_S": 10.0,
    "RUNS_SWEEP_BATCH": 1000,
    "RUNS_CLAIM_TIMEOUT_S": 120.0,
    # Tools
    "RUNS_MAX_TOOL_ROUNDS": 8,
    "RUNS_TOOL_TIMEOUT_S": 5.0,
    "RUNS_TOOL_THREADS": 8,
    "RUNS_TOOL_WAIT_POLL_S": 30.0,
    # Longest tool output sent to the model and stored (UTF-8 bytes); longer ones are cut
    "RUNS_TOOL_OUTPUT_MAX_BYTES": 65536,
    # Operators
    # JSON API clients: "SECRET", "name:scope:SECRET" or mappings with allow-lists
    # (runs/api/tokens.py). Rates per client and bucket, "<count>/<period>" or None for no
    # limit; a partial mapping keeps the other defaults (runs/api/throttles.py).
    "RUNS_API_TOKENS": [],
    "RUNS_API_THROTTLE_RATES": {"read": "600/min", "write": "120/min", "start": "30/min"},
    "RUNS_API_THROTTLE_CACHE": "default",
    # Live status (runs/live.py). Unset (None): REDIS_URL or else the broker, whichever is a
    # Redis URL (off when neither is); "" turns it off. Streams open at once per API client or
    # staff user, beyond which a new one is a 429 (0: no cap).
    "RUNS_PUBSUB_URL": None,
    "RUNS_SSE_HEARTBEAT_S": 15.0,
    "RUNS_SSE_MAX_S": 600.0,
    "RUNS_SSE_MAX_PER_CLIENT": 20,
    "FLOWER_URL": "",
    "RUNS_WORKER_METRICS_PORT": 0,
    "RUNS_WORKER_METRICS_ADDR": "127.0.0.1",  # the worker exporter has no auth: loopback
    # Who may read /metrics (runs/metrics_access.py): a bearer token ("" = none), or these
    # networks without one (default: loopback). The database gauges are counted at most once
    # per RUNS_METRICS_CACHE_S per process.
    "RUNS_METRICS_TOKEN": "",
    "RUNS_METRICS_ALLOWED_IPS": ["127.0.0.0/8", "::1/128"],
    "RUNS_METRICS_CACHE_S": 10.0,
    # Django's own, read by the API's size check
    "DATA_UPLOAD_MAX_MEMORY_SIZE": 2621440,
    "CELERY_BROKER_URL": "",
    "REDIS_URL": "",  # the host's Redis, if it names one: the live status default
}

#: Settings whose default comes from the environment (secrets and the SDK's own variables).
_ENV = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_WEBHOOK_SECRET",
    "OPENAI_WEBHOOK_SECRET_FALLBACKS",
    "OPENAI_ASSISTANT_ID",
)


#: URL schemes redis-py connects to: the side channels (live status, the budget) need one of them.
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def redis_url_or_none(url: str) -> str | None:
    """``url`` if it names a Redis server, else None (an AMQP broker cannot carry pub/sub)."""
    return url if url and url.lower().startswith(REDIS_SCHEMES) else None


def default_redis_url() -> str | None:
    """The Redis the side channels (live status, the request budget) use when not told:
    ``REDIS_URL``, else the broker, whichever names a Redis server first; None with neither."""
    return redis_url_or_none(settings.REDIS_URL) or redis_url_or_none(settings.CELERY_BROKER_URL)


class _Settings:
    """Attribute access to the host's settings, falling back to ``DEFAULTS``."""

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"runs has no setting {name!r} (known: see runs/conf.py)")
        value = getattr(django_settings, name, None)
        if value is not None:
            return value
        if name in _ENV:
            return os.environ.get(name, "")
        return DEFAULTS[name]

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("runs settings are read-only: set them in Django settings")


settings = _Settings()
