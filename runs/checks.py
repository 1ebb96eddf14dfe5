"""Django system checks: what a host project can get wrong, said by ``manage.py check``.

A host project sets only secrets and URLs (README, "Add runs to your project"); everything else
has a default in ``conf.py``. What is left to get wrong is reported here, before the first run
fails in a worker's log: no API key, no Celery broker, a result backend whose app is missing, a
backend or strategy name nobody knows, a number that would make the poll schedule raise.

Errors (``runs.E...``) are what stops runs from being tracked at all; warnings (``runs.W...``)
are what a process may legitimately lack (a web process never calls OpenAI, so it can run without
the API key). None of these is deploy-only: a correctly configured host sees nothing from ``runs``
under ``check --deploy`` either. Importing this module registers the checks
(``RunsConfig.ready``); every function decorated with ``@register("runs")`` below is one.

Ids in use: E001 broker, E002 result-backend app, E003 backend, E004 strategy, E005 a number,
E006 a schedule; W001 API key, W002 result backend; E101 a malformed webhook secret (current or
fallback), W101 the webhook strategy without a secret; E201 a bad metrics allow-list entry;
E301 a bad RUNS_QUEUES, W301 a side channel (live status, the budget) without a Redis URL.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

from celery import current_app
from django.apps import AppConfig, apps
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import ImproperlyConfigured

from .budget import redis_url as budget_redis_url
from .conf import redis_url_or_none, settings
from .engine.enqueue import KINDS
from .intake import secrets as webhook_secrets
from .metrics_access import parse_networks
from .schedule import schedule_for
from .status import Backend, Strategy

#: Numeric settings and the range that makes sense: (lowest, highest, lowest allowed itself?).
#: ``None`` for "no bound". Integers are marked: a count of threads must not be 2.5.
_POSITIVE = (0.0, None, False)
_NON_NEGATIVE = (0.0, None, True)
_NUMBERS: dict[str, tuple[float | None, float | None, bool]] = {
    "OPENAI_TIMEOUT_S": _POSITIVE,
    "OPENAI_CREATE_TIMEOUT_S": _POSITIVE,
    "RUNS_DEADLINE_S": (0.0, 7 * 24 * 3600.0, False),  # services.create_run's own bound
    "RUNS_MAX_COUNTDOWN_S": _POSITIVE,
    "RUNS_MAX_RPS": _NON_NEGATIVE,  # 0: no budget
    "RUNS_BUDGET_BURST_S": _POSITIVE,
    "RUNS_SWEEP_INTERVAL_S": _POSITIVE,
    "RUNS_SWEEP_GRACE_S": _NON_NEGATIVE,
    "RUNS_CLAIM_TIMEOUT_S": _POSITIVE,
    "RUNS_TOOL_TIMEOUT_S": _POSITIVE,
    "RUNS_TOOL_WAIT_POLL_S": _POSITIVE,
    "RUNS_SSE_HEARTBEAT_S": _POSITIVE,
    "RUNS_SSE_MAX_S": _POSITIVE,
    "RUNS_METRICS_CACHE_S": _NON_NEGATIVE,  # 0: count at every scrape
}
_INTEGERS: dict[str, tuple[int, int | None]] = {
    "RUNS_MAX_ERROR_RETRIES": (0, None),
    "RUNS_SWEEP_BATCH": (1, None),
    "RUNS_MAX_TOOL_ROUNDS": (1, None),
    "RUNS_TOOL_THREADS": (1, None),
    "RUNS_WORKER_METRICS_PORT": (0, 65535),  # 0: off
}
#: Result backends stored by django-celery-results, which then must be an installed app.
_DJANGO_RESULT_BACKENDS = ("django-db", "django-cache")


def _is_number(value: Any) -> bool:
    """A real number, and not a bool (``True`` is an int to Python, never a timeout to us)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _out_of_range(value: float, low: float | None, high: float | None, low_ok: bool) -> bool:
    too_low = low is not None and (value < low or (value == low and not low_ok))
    return too_low or (high is not None and value > high)


def _number_error(name: str, value: Any, expected: str) -> Error:
    return Error(
        f"{name} = {value!r} makes no sense for runs.",
        hint=f"Set {name} to {expected}, or remove it to use the default (runs/conf.py).",
        id="runs.E005",
    )


@register("runs")
def check_api_key(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list:
    """W001: no key for the real API. Workers call OpenAI, so their runs would all fail with 401.

    A warning, not an error: a web process only enqueues tasks and may be deployed without the
    key. With ``OPENAI_BASE_URL`` set (the local simulator, a proxy), a key is not required.
    """
    if settings.OPENAI_API_KEY or settings.OPENAI_BASE_URL:
        return []
    return [
        Warning(
            "OPENAI_API_KEY is not set: the workers' calls to OpenAI will be refused.",
            hint="Set OPENAI_API_KEY in the environment of the Celery workers (or "
            "OPENAI_BASE_URL to use an OpenAI-compatible server such as the local simulator).",
            id="runs.W001",
        )
    ]


@register("runs")
def check_celery(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list:
    """E001/E002/W002: the Celery app that will carry the tasks, as the host configured it.

    Reads the current Celery app (the host's, made current by its ``celery.py`` imported from the
    project package), so a broker set in ``celery.py`` itself counts as much as
    ``CELERY_BROKER_URL``. Without a broker Celery silently falls back to a local RabbitMQ.
    """
    conf = current_app.conf
    messages: list[CheckMessage] = []
    if not conf.broker_url:
        messages.append(
            Error(
                "No Celery broker URL: runs' tasks would go to Celery's default "
                "amqp://guest@localhost//.",
                hint="Set CELERY_BROKER_URL (e.g. redis://127.0.0.1:6379/0) and load it with "
                "Celery's Django boilerplate: app.config_from_object('django.conf:settings', "
                "namespace='CELERY'), imported from your project package's __init__.py.",
                id="runs.E001",
            )
        )
    backend = conf.result_backend
    if not backend or backend == "disabled":
        messages.append(
            Warning(
                "No Celery result backend: start_run results (the admin's task history, "
                "Flower's results) are not kept.",
                hint="Set CELERY_RESULT_BACKEND = 'django-db' and add 'django_celery_results' "
                "to INSTALLED_APPS.",
                id="runs.W002",
            )
        )
    elif str(backend).startswith(_DJANGO_RESULT_BACKENDS) and not apps.is_installed(
        "django_celery_results"
    ):
        messages.append(
            Error(
                f"CELERY_RESULT_BACKEND is {backend!r} but django_celery_results is not installed:"
                " every task result would fail to save.",
                hint="Add 'django_celery_results' to INSTALLED_APPS and migrate.",
                id="runs.E002",
            )
        )
    return messages


@register("runs")
def check_choices(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list:
    """E003/E004: the default backend and strategy must be names create_run accepts."""
    messages: list[CheckMessage] = []
    for name, choices, error_id in (
        ("RUNS_BACKEND", Backend, "runs.E003"),
        ("RUNS_STRATEGY", Strategy, "runs.E004"),
    ):
        value = getattr(settings, name)
        if value not in choices.values:
            known = ", ".join(repr(v) for v in choices.values)
            messages.append(
                Error(
                    f"{name} = {value!r} is unknown: every run created without one would fail.",
                    hint=f"Use one of {known}.",
                    id=error_id,
                )
            )
    return messages


@register("runs")
def check_numbers(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list:
    """E005/E006: timeouts, counts and the poll schedules must be numbers in a sane range.

    The schedules are built exactly as a poll builds them (``schedule.schedule_for``), so a cap
    below its base or a jitter of 1 is reported here instead of raising in every poll tick.
    """
    messages: list[CheckMessage] = []
    for name, (low, high, low_ok) in _NUMBERS.items():
        value = getattr(settings, name)
        if not _is_number(value) or _out_of_range(value, low, high, low_ok):
            bound = ">= 0" if low_ok else "> 0"
            expected = f"a number {bound}" + (f" and <= {high:g}" if high is not None else "")
            messages.append(_number_error(name, value, expected))
    for name, (low_int, high_int) in _INTEGERS.items():
        value = getattr(settings, name)
        if not isinstance(value, int) or isinstance(value, bool):
            messages.append(_number_error(name, value, f"an integer >= {low_int}"))
        elif _out_of_range(value, low_int, high_int, True):
            upper = f" and <= {high_int}" if high_int is not None else ""
            messages.append(_number_error(name, value, f"an integer >= {low_int}{upper}"))
    for strategy, prefix in (("poll", "RUNS_POLL"), ("webhook", "RUNS_SAFETY_NET")):
        try:
            schedule_for(strategy)
        except (TypeError, ValueError):
            messages.append(
                Error(
                    f"The {strategy} schedule ({prefix}_BASE_S, {prefix}_FACTOR, {prefix}_CAP_S, "
                    "RUNS_POLL_JITTER) is invalid: every poll tick would raise.",
                    hint=f"Need {prefix}_BASE_S > 0, {prefix}_FACTOR >= 1, "
                    f"{prefix}_CAP_S >= {prefix}_BASE_S and 0 <= RUNS_POLL_JITTER < 1.",
                    id="runs.E006",
                )
            )
    return messages


# --- Webhook secrets ----------------------------------------------------------------------------


@register("runs")
def check_webhook_secrets(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list:
    """E101: a malformed webhook secret; W101: the webhook strategy without any secret.

    A malformed secret (not ``whsec_`` + base64) can verify nothing: the intake would answer 500
    to every delivery (runs/intake/secrets.py says why not 400). Messages name the setting (and a
    fallback's position), never the value. W101 is a warning like W001: only the web process
    that receives webhooks needs the secret.
    """
    messages: list[CheckMessage] = [
        Error(
            f"{problem}: no webhook delivery can be verified with it.",
            hint="Copy the secret exactly as OpenAI showed it (whsec_ followed by base64), e.g. "
            "from manage.py register_webhook; fallbacks are comma-separated.",
            id="runs.E101",
        )
        for problem in webhook_secrets.problems()
    ]
    if settings.RUNS_STRATEGY == Strategy.WEBHOOK and not webhook_secrets.current():
        messages.append(
            Warning(
                "RUNS_STRATEGY is 'webhook' but OPENAI_WEBHOOK_SECRET is not set: the webhook "
                "endpoint answers 500 and runs finish on the slow safety-net polls only.",
                hint="Set OPENAI_WEBHOOK_SECRET in the web process's environment "
                "(manage.py register_webhook URL prints it).",
                id="runs.W101",
            )
        )
    return messages


# --- Metrics access -----------------------------------------------------------------------------


@register("runs")
def check_metrics_access(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list:
    """E201: an allow-list entry that is no address or network; every scrape would answer 500."""
    try:
        parse_networks(settings.RUNS_METRICS_ALLOWED_IPS)
    except ImproperlyConfigured as exc:
        return [
            Error(
                str(exc),
                hint="Addresses or CIDR networks, comma-separated, e.g. 127.0.0.0/8,10.0.0.0/8 "
                "(docs/operations.md, 'Who may scrape /metrics').",
                id="runs.E201",
            )
        ]
    return []


# --- Queues and the broker (docs/celery.md) ------------------------------------------------------


@register("runs")
def check_queues(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list:
    """E301: RUNS_QUEUES must map known kinds to queue names; a typo ("wakes") would silently
    leave that kind on the default queue. W301: a side channel set up on a URL that is not Redis
    (an AMQP broker): it is switched off at run time, never breaks a task, but should be said."""
    queues = settings.RUNS_QUEUES
    messages: list[CheckMessage] = []
    bad = (
        [repr(queues)]
        if not isinstance(queues, dict)
        else [f"{k!r}: {v!r}" for k, v in queues.items() if k not in KINDS or not _queue_name(v)]
    )
    if bad:
        messages.append(
            Error(
                f"RUNS_QUEUES has entries runs cannot use: {', '.join(bad)}.",
                hint=f"A dict from a kind ({', '.join(KINDS)}) to a queue name, or None for "
                "Celery's default queue.",
                id="runs.E301",
            )
        )
    pubsub = settings.RUNS_PUBSUB_URL
    problems = ["RUNS_PUBSUB_URL (live status)"] if pubsub and not redis_url_or_none(pubsub) else []
    if settings.RUNS_MAX_RPS and budget_redis_url() is None:
        problems.append("RUNS_MAX_RPS (the request budget)")
    if problems:
        messages.append(
            Warning(
                f"{' and '.join(problems)} need a Redis URL and have none: they are off.",
                hint="Set REDIS_URL, RUNS_PUBSUB_URL or RUNS_BUDGET_REDIS_URL to a redis:// URL "
                "(the broker may stay on RabbitMQ).",
                id="runs.W301",
            )
        )
    return messages


def _queue_name(value: Any) -> bool:
    return value is None or (isinstance(value, str) and bool(value.strip()))
