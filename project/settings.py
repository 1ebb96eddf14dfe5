"""Settings, all from the environment (12-factor) through django-environ.

Every variable is documented in ``.env.example``. The defaults are the embedded demo set-up:
SQLite, a Redis on localhost and the local simulator; production overrides them by environment.
"""

import warnings
from pathlib import Path

import environ

from project.environment import StrictEnv
from project.secret_key import local_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent

env = StrictEnv()
# A developer's .env is read when present; real deployments set the environment directly.
# parse_comments: a "# note" after a value (.env.example's lines, uncommented) is not part of it.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False, parse_comments=True)

# No known default: without DJANGO_SECRET_KEY this checkout makes a random key once and keeps it
# in var/secret_key (project/secret_key.py says why). Several hosts must set the same one.
SECRET_KEY = env("DJANGO_SECRET_KEY", default="") or local_secret_key(
    BASE_DIR / "var" / "secret_key"
)
DEBUG = env.bool("DJANGO_DEBUG", default=False)
# Explicit names only, never "*": a wrong Host header gets a 400 instead of poisoned links.
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# HTTPS (docs/operations.md, "Security defaults"). Off by default because the demo and compose
# serve plain HTTP, where a secure-only cookie would never come back and a redirect would loop;
# behind TLS turn them on. DJANGO_SECURE_PROXY_SSL_HEADER: trust X-Forwarded-Proto from a proxy
# that terminates TLS (only when that proxy always sets it: a client could send it otherwise).
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=False)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("DJANGO_CSRF_COOKIE_SECURE", default=False)
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
if env.bool("DJANGO_SECURE_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_results",
    "django_prometheus",
    "ninja",
    "runs",
    # Development tools (demo, chaos, runsimulator; the example tools): a host app leaves it out.
    "runs_dev",
]

MIDDLEWARE = [
    # First and last: django-prometheus times every request and counts responses by status.
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # The admin's CSS and JS from any server (uvicorn in compose), no separate static host.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"
ASGI_APPLICATION = "project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A worker and the web process write the same file: wait for the lock instead of failing.
    # IMMEDIATE: a transaction that reads then writes (a row-locked claim) takes the write lock
    # up front; a deferred one fails at once with "database is locked" when it must upgrade.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    )
elif DATABASES["default"]["ENGINE"].endswith("postgresql") and env.int(
    "DATABASE_POOL_MAX_SIZE", 20
):
    # One connection pool per process (Django's own, on psycopg_pool), shared by its threads:
    # closing a connection hands it back instead of hanging up. Why not CONN_MAX_AGE: Celery
    # (5.5 on) closes every connection after every task, whatever CONN_MAX_AGE says, so each
    # task paid a new PostgreSQL connection; measured, 1,000 starts went from 45 to 58/s with
    # the pool (docs/operations.md, "Database connections"). Under ASGI the pool also caps the
    # connections a web process holds. A thread finding the pool empty waits up to 10 s.
    # Health checks: one round trip when a connection leaves the pool, so one that died (a
    # database restart) is replaced instead of failing a task.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("DATABASE_POOL_MIN_SIZE", 1),
        "max_size": env.int("DATABASE_POOL_MAX_SIZE", 20),
        "timeout": env.float("DATABASE_POOL_TIMEOUT_S", 10.0),
    }
else:
    # No pool (another server, or DATABASE_POOL_MAX_SIZE=0 behind PgBouncer, say): workers and
    # sync web processes keep their connection for CONN_MAX_AGE; health checks drop one that
    # died. The ASGI entry point (project/asgi.py) turns persistence off: see why there. Celery
    # still closes a worker's connection after each task unless CELERY_DB_REUSE_MAX is set.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", 60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
# WhiteNoise serves the apps' static files straight from their folders: no collectstatic step to
# forget before starting a server (the admin is the only user of static files here).
WHITENOISE_USE_FINDERS = True
# ...so an empty STATIC_ROOT (no collectstatic run yet) is normal, not worth a warning.
warnings.filterwarnings("ignore", message="No directory at: .*static")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "runs": {"handlers": ["console"], "level": env.log_level("RUNS_LOG_LEVEL", "INFO")}
    },
}

# --- Celery -------------------------------------------------------------------------------------
# REDIS_URL only as set: the localhost default is the broker's alone. A default here made a host
# on RabbitMQ without REDIS_URL send its request budget to a Redis on each worker's own machine
# (N budgets, or none), where the system check runs.W301 should have said there was none.
REDIS_URL = env("REDIS_URL", default="")
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL or "redis://127.0.0.1:6379/0")
# The Redis of the side channels (live status, the request budget): REDIS_URL when set, else the
# broker; only ever a Redis URL, so a RabbitMQ broker never ends up in a Redis client.
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
SIDE_REDIS_URL = next(
    (u for u in (REDIS_URL, CELERY_BROKER_URL) if u.startswith(_REDIS_SCHEMES)), ""
)
# django-celery-results' rows, each result written with one statement (runs/results.py).
CELERY_RESULT_BACKEND = "runs.results:DatabaseBackend"
# One default queue per deployment; the demo uses a private one so it never eats another app's.
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_TASK_DEFAULT_QUEUE", default="celery")
# Wakes first (docs/celery.md, "Queues and routing"): starts, scheduled polls, wakes and tools
# each get a queue, <prefix>.starts, .polls, .wakes, .tools. RUNS_QUEUE_PREFIX= (empty) sends
# everything to the default queue. A worker started without -Q consumes every queue below.
RUNS_QUEUE_PREFIX = env("RUNS_QUEUE_PREFIX", default="runs")
RUNS_QUEUES = (
    {kind: f"{RUNS_QUEUE_PREFIX}.{kind}s" for kind in ("start", "poll", "wake", "tool")}
    if RUNS_QUEUE_PREFIX
    else {}
)
# Listed by urgency: wakes (someone waits), the default queue (the sweep), scheduled polls (and
# batched polling's runs.poll_due), tools, starts. With CELERY_QUEUE_ORDER_STRATEGY=priority a
# worker on several queues always takes from the first non-empty one in this order.
CELERY_TASK_QUEUES = {
    name: {"exchange": name, "routing_key": name}
    for name in (
        RUNS_QUEUES.get("wake"),
        CELERY_TASK_DEFAULT_QUEUE,
        *(RUNS_QUEUES.get(kind) for kind in ("poll", "tool", "start")),
    )
    if name
}
CELERY_RESULT_EXTENDED = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# Countdown tasks sit unacknowledged in a worker until due; Redis redelivers them after the
# visibility timeout. Our longest countdown is minutes, so an hour leaves a wide margin and a
# redelivered poll is harmless anyway (the poll ticket check). See docs/celery.md.
# kombu's "round_robin" (its default) rotates a worker's queues after each fetch, so no queue
# starves. "priority" (always the first non-empty queue, in the order above) was tried and
# starved starts: with 1,000 runs polling, the polls queue is never empty for long, and 36 of
# 1,000 starts waited over 5 minutes (docs/celery.md). Wakes come first by a dedicated wake
# worker (make worker-wakes), on Redis and RabbitMQ alike.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", 3600),
    "queue_order_strategy": env("CELERY_QUEUE_ORDER_STRATEGY", default="round_robin"),
}
# 1: a worker holds one unacknowledged task per slot, and ours are acknowledged late, so a full
# worker holds nothing beyond what it runs: a wake waits for one slot to free, not behind a hoard
# of prefetched starts (measured: 4 -> 1.0-1.6 s, 1 -> 0.22-0.33 s; docs/celery.md).
# Countdown tasks do not count against it; CELERY_WORKER_ETA_TASK_LIMIT caps how many a worker
# holds (default: no cap).
CELERY_WORKER_PREFETCH_MULTIPLIER = env.int("CELERY_WORKER_PREFETCH_MULTIPLIER", 1)
CELERY_WORKER_ETA_TASK_LIMIT = env.int("CELERY_WORKER_ETA_TASK_LIMIT", default=None)
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_TIME_LIMIT = 90
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=None)

# --- OpenAI -------------------------------------------------------------------------------------
# OPENAI_BASE_URL is read by the SDK itself; we read it too only to show where runs go.
OPENAI_API_KEY = env("OPENAI_API_KEY", default="")
OPENAI_BASE_URL = env("OPENAI_BASE_URL", default="")
OPENAI_WEBHOOK_SECRET = env("OPENAI_WEBHOOK_SECRET", default="")
OPENAI_ASSISTANT_ID = env("OPENAI_ASSISTANT_ID", default="")
# Tasks never wait inside the SDK: no SDK retries (they sleep) and a short timeout.
OPENAI_TIMEOUT_S = env.float("OPENAI_TIMEOUT_S", 10.0)

# --- runs ---------------------------------------------------------------------------------------
RUNS_BACKEND = env("RUNS_BACKEND", default="responses")
RUNS_STRATEGY = env("RUNS_STRATEGY", default="poll")
RUNS_DEFAULT_MODEL = env("RUNS_DEFAULT_MODEL", default="gpt-4.1-mini")
RUNS_DEADLINE_S = env.float("RUNS_DEADLINE_S", 600.0)
RUNS_POLL_BASE_S = env.float("RUNS_POLL_BASE_S", 0.5)
RUNS_POLL_FACTOR = env.float("RUNS_POLL_FACTOR", 1.5)
RUNS_POLL_CAP_S = env.float("RUNS_POLL_CAP_S", 5.0)
RUNS_POLL_JITTER = env.float("RUNS_POLL_JITTER", 0.1)
RUNS_SAFETY_NET_BASE_S = env.float("RUNS_SAFETY_NET_BASE_S", 30.0)
RUNS_SAFETY_NET_FACTOR = env.float("RUNS_SAFETY_NET_FACTOR", 2.0)
RUNS_SAFETY_NET_CAP_S = env.float("RUNS_SAFETY_NET_CAP_S", 300.0)
RUNS_MAX_RPS = env.float("RUNS_MAX_RPS", 0.0)  # 0: no budget
RUNS_BUDGET_BURST_S = env.float("RUNS_BUDGET_BURST_S", 1.0)  # bucket size, in seconds of rate
RUNS_BUDGET_REDIS_URL = env("RUNS_BUDGET_REDIS_URL", default=SIDE_REDIS_URL)
# Recovery sweep (Celery beat): how often, how late a poll may be before it is re-armed, and how
# long a start claim may stay without a remote id before the create is tried again.
RUNS_SWEEP_INTERVAL_S = env.float("RUNS_SWEEP_INTERVAL_S", 5.0)
RUNS_SWEEP_GRACE_S = env.float("RUNS_SWEEP_GRACE_S", 10.0)
RUNS_SWEEP_BATCH = env.int("RUNS_SWEEP_BATCH", 1000)
RUNS_CLAIM_TIMEOUT_S = env.float("RUNS_CLAIM_TIMEOUT_S", 120.0)
# The longest single countdown handed to the broker; longer waits hop (docs/celery.md).
RUNS_MAX_COUNTDOWN_S = env.float("RUNS_MAX_COUNTDOWN_S", 300.0)
# "per_run" (a countdown task per run), "batched" (runs.poll_due claims due runs in batches) or
# "auto" (per run until a poll runs late; the app's own default is "per_run", which needs no
# beat to poll): docs/architecture.md, "Batched polling", says when each wins. This project
# always runs beat (make demo, docker-compose.yml), so "auto".
RUNS_POLL_MODE = env("RUNS_POLL_MODE", default="auto")
# "auto": per run until a run's poll runs this late, then that run's polls are batched.
RUNS_POLL_AUTO_LATE_S = env.float("RUNS_POLL_AUTO_LATE_S", 0.5)
# The same for webhook-tracked runs' safety-net polls: "batched" by default (runs.poll_due finds
# them by due time; a start publishes no countdown task), or "per_run".
RUNS_SAFETY_NET_MODE = env("RUNS_SAFETY_NET_MODE", default="batched")
# False: start_run leaves no result row (docs/celery.md, Settings, RUNS_KEEP_START_RESULTS).
RUNS_KEEP_START_RESULTS = env.bool("RUNS_KEEP_START_RESULTS", default=True)
# Chunked starts (docs/architecture.md, "Chunked starts"): 1 starts each run in its own task;
# 16 starts a burst of 1,000 runs 1.3x to 2.6x as fast (docs/bench/README.md, "Chunked starts").
RUNS_START_CHUNK = env.int("RUNS_START_CHUNK", 1)
RUNS_START_CONCURRENCY = env.int("RUNS_START_CONCURRENCY", 8)
RUNS_POLL_BATCH = env.int("RUNS_POLL_BATCH", 200)
RUNS_POLL_CONCURRENCY = env.int("RUNS_POLL_CONCURRENCY", 16)
# Cheap and long runs (docs/modes.md): one clock for the 2h/8h windows and the Batch API's 24 h,
# shared with the simulator (its --time-scale reads the same variable); 1.0 is the real clock.
RUNS_TIME_SCALE = env.float("RUNS_TIME_SCALE", 1.0)
RUNS_WINDOW_MAX_POLLS = env.int("RUNS_WINDOW_MAX_POLLS", 20)
RUNS_WINDOW_GRACE_S = env.float("RUNS_WINDOW_GRACE_S", 1800.0)  # scaled like the window
# A batch's upload and downloads (files of up to hundreds of MB) get this long, not the create's.
RUNS_BATCH_FILE_TIMEOUT_S = env.float("RUNS_BATCH_FILE_TIMEOUT_S", 600.0)
# A create whose answer is lost may double the run (the Responses API has no way to look it up),
# so creates get more patience than retrieves.
OPENAI_CREATE_TIMEOUT_S = env.float("OPENAI_CREATE_TIMEOUT_S", 30.0)
# The app adds its "runs-sweep" entry to the beat schedule itself (runs/beat.py).
CELERY_BEAT_SCHEDULE_FILENAME = str(BASE_DIR / "var" / "celerybeat-schedule")
# Transient API errors (429, 5xx, timeouts) are retried with a countdown this many times in a row.
RUNS_MAX_ERROR_RETRIES = env.int("RUNS_MAX_ERROR_RETRIES", 8)
# Tool calls (docs/tools.md): rounds a run may ask for before it fails, how long the worker waits
# for one tool (per-tool timeout_s wins), threads that run tools, and how often a run waiting for
# a manual output is looked at (sooner at its deadline or the API's expires_at).
RUNS_MAX_TOOL_ROUNDS = env.int("RUNS_MAX_TOOL_ROUNDS", 8)
RUNS_TOOL_TIMEOUT_S = env.float("RUNS_TOOL_TIMEOUT_S", 5.0)
RUNS_TOOL_THREADS = env.int("RUNS_TOOL_THREADS", 8)
RUNS_TOOL_WAIT_POLL_S = env.float("RUNS_TOOL_WAIT_POLL_S", 30.0)

# --- operators: JSON API, live status, Flower, metrics (docs/operations.md) ----------------------
# Bearer tokens accepted by /api/ (comma-separated). Empty: the API answers 401 to everyone.
RUNS_API_TOKENS = env.list("RUNS_API_TOKENS", default=[])
# Redis that carries run_status_changed to the live-status streams (default: REDIS_URL or the
# broker, whichever is Redis, which every process already reaches). Empty: publishing is off.
RUNS_PUBSUB_URL = env("RUNS_PUBSUB_URL", default=SIDE_REDIS_URL)
# Seconds between SSE keep-alive comments, the longest a stream stays open (clients reconnect),
# and how many streams one API client (or staff user) may hold open at once (0: no cap).
RUNS_SSE_HEARTBEAT_S = env.float("RUNS_SSE_HEARTBEAT_S", 15.0)
RUNS_SSE_MAX_S = env.float("RUNS_SSE_MAX_S", 600.0)
RUNS_SSE_MAX_PER_CLIENT = env.int("RUNS_SSE_MAX_PER_CLIENT", 20)
# The API throttles count in a Redis cache when there is a Redis (REDIS_URL or the broker), so
# every web process (compose runs two) counts against one limit; else each process on its own.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "throttle": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": SIDE_REDIS_URL,
            "KEY_PREFIX": "runs",
        }
        if SIDE_REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "throttle"}
    ),
}
RUNS_API_THROTTLE_CACHE = "throttle"
# Where the admin links a run's tasks.
FLOWER_URL = env("FLOWER_URL", default="http://127.0.0.1:5555")
# A Celery worker serves its own Prometheus metrics on this port (0: off; one port per worker),
# on this address (loopback unless a private network, like compose's, makes wider safe).
RUNS_WORKER_METRICS_PORT = env.int("RUNS_WORKER_METRICS_PORT", 0)
RUNS_WORKER_METRICS_ADDR = env("RUNS_WORKER_METRICS_ADDR", default="127.0.0.1")
# Who may read /metrics: a bearer token, or these networks without one (docs/operations.md).
RUNS_METRICS_TOKEN = env("RUNS_METRICS_TOKEN", default="")
RUNS_METRICS_ALLOWED_IPS = env.list("RUNS_METRICS_ALLOWED_IPS", default=["127.0.0.0/8", "::1/128"])
RUNS_METRICS_CACHE_S = env.float("RUNS_METRICS_CACHE_S", 10.0)
