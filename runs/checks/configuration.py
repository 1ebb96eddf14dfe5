"""Checks of the settings every host has: the Celery app, the API key, names and numbers."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

from celery import current_app
from django.apps import AppConfig, apps
from django.conf import settings as django_settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import ImproperlyConfigured

from .. import pricing, spend
from ..conf import settings
from ..schedule import schedule_for
from ..status import Backend, Strategy

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
    "RUNS_POLL_LEASE_S": _POSITIVE,
    "RUNS_POLL_DUE_INTERVAL_S": _POSITIVE,
    "RUNS_TIME_SCALE": _POSITIVE,
    # Positive: at 0 a window's last poll falls on its deadline, which expires without a look.
    "RUNS_WINDOW_GRACE_S": _POSITIVE,
    "RUNS_BATCH_POLL_BASE_S": _POSITIVE,
    "RUNS_BATCH_POLL_CAP_S": _POSITIVE,
    "RUNS_BATCH_SAFETY_NET_BASE_S": _POSITIVE,
    "RUNS_BATCH_SAFETY_NET_CAP_S": _POSITIVE,
    "RUNS_BATCH_GRACE_S": _POSITIVE,
}
_INTEGERS: dict[str, tuple[int, int | None]] = {
    "RUNS_MAX_ERROR_RETRIES": (0, None),
    "RUNS_SWEEP_BATCH": (1, None),
    "RUNS_MAX_TOOL_ROUNDS": (1, None),
    "RUNS_TOOL_THREADS": (1, None),
    "RUNS_WORKER_METRICS_PORT": (0, 65535),  # 0: off
    "RUNS_TOOL_OUTPUT_MAX_BYTES": (1024, None),  # room for the truncation marker and some text
    "RUNS_POLL_BATCH": (1, None),
    "RUNS_POLL_CONCURRENCY": (1, None),
    "RUNS_WINDOW_MAX_POLLS": (1, None),
    "RUNS_BATCH_MAX_RUNS": (1, 50000),  # the Batch API's own limit per file
    "RUNS_BATCH_SETTLE_CHUNK": (1, None),
    "RUNS_BATCH_FIND_PAGES": (1, None),
}
#: Result backends stored by django-celery-results, which then must be an installed app.
_DJANGO_RESULT_BACKENDS = ("django-db", "django-cache", "runs.results")


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
                hint="Set CELERY_RESULT_BACKEND = 'runs.results:DatabaseBackend' (or "
                "'django-db') and add 'django_celery_results' "
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
def check_worker_connections(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list:
    """W003: a PostgreSQL database with neither a connection pool nor ``CELERY_DB_REUSE_MAX``.

    Celery's Django fixup (5.5 on) closes every database connection after every task, whatever
    ``CONN_MAX_AGE`` says, so each start and each poll tick opens a new connection: on
    PostgreSQL that cost a quarter of the start rate (docs/operations.md, "Database
    connections"). With Django's pool (PostgreSQL only), closing hands the connection back
    instead. SQLite opens a file, which is cheap, so it is not reported.
    """
    if current_app.conf.get("CELERY_DB_REUSE_MAX"):
        return []
    unpooled = [
        alias
        for alias, db in django_settings.DATABASES.items()
        if db.get("ENGINE", "").endswith("postgresql") and not (db.get("OPTIONS") or {}).get("pool")
    ]
    if not unpooled:
        return []
    return [
        Warning(
            f"Database {', '.join(map(repr, unpooled))} has no connection pool: Celery closes "
            "the connections of a worker after every task, so each poll tick and each start "
            "opens a new one.",
            hint="Turn on Django's pool: pip install 'psycopg[pool]', CONN_MAX_AGE = 0 and "
            "OPTIONS['pool'] = {'max_size': N}, N at least the worker's --concurrency plus "
            "RUNS_POLL_CONCURRENCY and RUNS_TOOL_THREADS where used; or set CELERY_DB_REUSE_MAX "
            "if a pooler such as PgBouncer sits in front.",
            id="runs.W003",
        )
    ]


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


@register("runs")
def check_prices_and_limits(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list:
    """E011/E012: RUNS_PRICES and RUNS_SPEND_LIMITS must parse (docs/modes.md).

    Otherwise every run's cost would be left empty (a bad price entry) or every create_run would
    raise (a bad limit: it fails closed rather than let spending through unchecked).
    """
    messages: list[CheckMessage] = []
    for error_id, parse in (("runs.E011", pricing.price_table), ("runs.E012", spend.limits)):
        try:
            parse()
        except ImproperlyConfigured as exc:
            messages.append(Error(str(exc), hint="See docs/modes.md.", id=error_id))
    return messages


@register("runs")
def check_claim_outlasts_creates(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list:
    """W004: a start or submit claim that a slow create can outlive.

    A start holds its claim through two creates (the conversation's, the run's), each allowed
    ``OPENAI_CREATE_TIMEOUT_S``, and then its writes; a submit likewise. A claim older than
    ``RUNS_CLAIM_TIMEOUT_S`` is taken for a dead worker's and released by the sweep, so a start
    still waiting on OpenAI would be made a second time. Three creates' time is the least that
    leaves room for the writes (chunked starts use the rest: ``runs.engine.start_waves``).
    """
    claim, create = settings.RUNS_CLAIM_TIMEOUT_S, settings.OPENAI_CREATE_TIMEOUT_S
    if not (_is_number(claim) and _is_number(create)) or claim > 3 * create:
        return []  # a value that is not a number is E005's
    return [
        Warning(
            f"RUNS_CLAIM_TIMEOUT_S = {claim!r} is not longer than three creates "
            f"(OPENAI_CREATE_TIMEOUT_S = {create!r}): a slow start can outlast its claim, which "
            "the sweep then releases, and the run is created twice.",
            hint=f"Raise RUNS_CLAIM_TIMEOUT_S above {3 * create:g} (the default is 120 with "
            "creates of 30), or lower OPENAI_CREATE_TIMEOUT_S.",
            id="runs.W004",
        )
    ]
