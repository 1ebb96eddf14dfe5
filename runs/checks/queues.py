"""Checks of how work reaches the workers: queues, side channels on Redis, the poll mode."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import current_app
from django.apps import AppConfig
from django.core.checks import CheckMessage, Error, Warning, register

from ..budget import redis_url as budget_redis_url
from ..conf import redis_url_or_none, settings
from ..engine.batch_poll import POLL_DUE
from ..engine.enqueue import KINDS
from ..poll_modes import MODES, needs_batches

# --- Queues and the broker (docs/celery.md) ------------------------------------------------------

#: What RUNS_POLL_MODE and RUNS_SAFETY_NET_MODE may be: a countdown task per run, beat's
#: runs.poll_due for many, or per run until a poll runs late (``runs.poll_modes``).
POLL_MODES = MODES


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


@register("runs")
def check_poll_mode(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list:
    """E302: RUNS_POLL_MODE and RUNS_SAFETY_NET_MODE must each be "per_run", "batched" or "auto"
    (docs/architecture.md, "Batched polling"); anything else would leave runs without a poll.
    W302: some runs polled in batches, but nothing schedules the batches."""
    messages: list[CheckMessage] = []
    batched = []
    for name in ("RUNS_POLL_MODE", "RUNS_SAFETY_NET_MODE"):
        mode = getattr(settings, name)
        if needs_batches(mode):
            batched.append((name, mode))
        elif mode not in POLL_MODES:
            messages.append(
                Error(
                    f"{name} = {mode!r} is unknown.",
                    hint=f"Use one of {', '.join(repr(m) for m in POLL_MODES)}.",
                    id="runs.E302",
                )
            )
    if batched:
        messages += _check_poll_due_scheduled(batched)
    return messages


def _check_poll_due_scheduled(names: list[tuple[str, str]]) -> list:
    """W302: a batched (or auto) mode with ``RUNS_BEAT_SCHEDULE = False`` and no beat entry of
    the host's for ``runs.poll_due``: those runs are polled only when the sweep finds them
    overdue. A host that schedules it some other way (django-celery-beat rows) silences it with
    ``SILENCED_SYSTEM_CHECKS = ["runs.W302"]``."""
    if settings.RUNS_BEAT_SCHEDULE:
        return []  # runs.beat adds the runs-poll-due entry
    entries = current_app.conf.beat_schedule or {}
    if any(_task_of(entry) == POLL_DUE for entry in entries.values()):
        return []
    which = " and ".join(f'{name} = "{mode}"' for name, mode in names)
    return [
        Warning(
            f"{which} with RUNS_BEAT_SCHEDULE = False: nothing schedules {POLL_DUE}, so those "
            "runs are polled only when the sweep finds them overdue.",
            hint=f"Schedule {POLL_DUE} every RUNS_POLL_DUE_INTERVAL_S yourself (an entry "
            "'runs-poll-due' in CELERY_BEAT_SCHEDULE; scheduled elsewhere, e.g. django-celery-beat"
            " rows: silence runs.W302), or set RUNS_BEAT_SCHEDULE = True (docs/architecture.md,"
            ' "Batched polling").',
            id="runs.W302",
        )
    ]


def _task_of(entry: Any) -> Any:
    return entry.get("task") if isinstance(entry, dict) else getattr(entry, "task", None)
