"""Settings, all from the environment (12-factor) through django-environ.

Every variable is documented in ``.env.example``. The defaults are the embedded demo set-up:
SQLite, a Redis on localhost and the local simulator; production overrides them by environment.
"""

import warnings
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A developer's .env is read when present; real deployments set the environment directly.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

SECRET_KEY = env("DJANGO_SECRET_KEY", default="dev-insecure-change-me")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "testserver"])

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
else:
    # Workers and sync web processes keep their connection between tasks and requests: opening
    # a PostgreSQL connection costs more than a poll tick's queries. Health checks drop one that
    # died. (Under an ASGI server, set DATABASE_CONN_MAX_AGE=0.)
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
    "loggers": {"runs": {"handlers": ["console"], "level": env("RUNS_LOG_LEVEL", default="INFO")}},
}

# --- Celery -------------------------------------------------------------------------------------
REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = "django-db"
# One queue per deployment; the demo uses a private one so it never eats another app's tasks.
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_TASK_DEFAULT_QUEUE", default="celery")
CELERY_RESULT_EXTENDED = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# Countdown tasks sit unacknowledged in a worker until due; Redis redelivers them after the
# visibility timeout. Our longest countdown is minutes, so an hour leaves a wide margin and a
# redelivered poll is harmless anyway (the poll ticket check). See docs/celery.md.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", 3600)}
CELERY_WORKER_PREFETCH_MULTIPLIER = env.int("CELERY_WORKER_PREFETCH_MULTIPLIER", 4)
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_TIME_LIMIT = 90
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

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
RUNS_BUDGET_REDIS_URL = env("RUNS_BUDGET_REDIS_URL", default="")  # default: the broker
# Recovery sweep (Celery beat): how often, how late a poll may be before it is re-armed, and how
# long a start claim may stay without a remote id before the create is tried again.
RUNS_SWEEP_INTERVAL_S = env.float("RUNS_SWEEP_INTERVAL_S", 5.0)
RUNS_SWEEP_GRACE_S = env.float("RUNS_SWEEP_GRACE_S", 10.0)
RUNS_SWEEP_BATCH = env.int("RUNS_SWEEP_BATCH", 1000)
RUNS_CLAIM_TIMEOUT_S = env.float("RUNS_CLAIM_TIMEOUT_S", 120.0)
# The longest single countdown handed to the broker; longer waits hop (docs/celery.md).
RUNS_MAX_COUNTDOWN_S = env.float("RUNS_MAX_COUNTDOWN_S", 300.0)
# A create whose answer is lost may double the run (the Responses API has no way to look it up),
# so creates get more patience than retrieves.
OPENAI_CREATE_TIMEOUT_S = env.float("OPENAI_CREATE_TIMEOUT_S", 30.0)
CELERY_BEAT_SCHEDULE = {
    "runs-sweep": {
        "task": "runs.sweep",
        "schedule": RUNS_SWEEP_INTERVAL_S,
        "options": {"expires": RUNS_SWEEP_INTERVAL_S},
    },
}
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
# Redis that carries run_status_changed to the live-status streams (default: the broker, which
# every process already reaches). Empty: publishing is off.
RUNS_PUBSUB_URL = env("RUNS_PUBSUB_URL", default=CELERY_BROKER_URL)
# Seconds between SSE keep-alive comments, and the longest a stream stays open (clients reconnect).
RUNS_SSE_HEARTBEAT_S = env.float("RUNS_SSE_HEARTBEAT_S", 15.0)
RUNS_SSE_MAX_S = env.float("RUNS_SSE_MAX_S", 600.0)
# Where the admin links a run's tasks.
FLOWER_URL = env("FLOWER_URL", default="http://127.0.0.1:5555")
# A Celery worker serves its own Prometheus metrics on this port (0: off; one port per worker).
RUNS_WORKER_METRICS_PORT = env.int("RUNS_WORKER_METRICS_PORT", 0)
