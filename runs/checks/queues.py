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


@register("runs")
def check_queues_consumed(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list:
    """W303: a queue ``RUNS_QUEUES`` sends to that a worker started without ``-Q`` does not
    read (not in ``CELERY_TASK_QUEUES``, or that setting unset and the queue not the default).
    Its messages would wait unread, and the sweep re-sends to the same queue: runs would stay
    pending, or cancelling, until their deadline. A host that runs a worker with ``-Q`` for
    each such queue silences it (``SILENCED_SYSTEM_CHECKS``)."""
    queues = settings.RUNS_QUEUES
    if not isinstance(queues, dict):
        return []  # runs.E301
    conf = current_app.conf
    read = {_name(q) for q in conf.task_queues or ()} or {conf.task_default_queue}
    unread = sorted({v for v in queues.values() if isinstance(v, str) and v} - read)
    if not unread:
        return []
    return [
        Warning(
            f"RUNS_QUEUES sends work to {', '.join(unread)}, which a worker started without -Q "
            "does not read (not in CELERY_TASK_QUEUES): those tasks would wait unread.",
            hint="Add them to CELERY_TASK_QUEUES, or start a worker with -Q for each (then "
            'silence runs.W303). docs/celery.md, "Queues and routing".',
            id="runs.W303",
        )
    ]


@register("runs")
def check_countdown_cap(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list:
    """W304: ``RUNS_MAX_COUNTDOWN_S`` (a countdown waits unacknowledged in a worker) must stay
    well under the broker's redelivery of unacknowledged messages: Redis's visibility timeout
    (kombu's default 3600 s), RabbitMQ's ``consumer_timeout`` (15 or 30 min by version). Past
    it every long countdown is delivered twice (Redis), or RabbitMQ closes the channel and all
    of that worker's countdowns are delivered again."""
    cap = float(settings.RUNS_MAX_COUNTDOWN_S)
    conf = current_app.conf
    url = str(conf.broker_url or "")
    if url.startswith(("amqp", "pyamqp")):
        limit, what = RABBITMQ_CONSUMER_TIMEOUT_S, "RabbitMQ's consumer_timeout (15 min on 3.8)"
    elif url.startswith(("redis", "rediss", "sentinel")):
        options = conf.broker_transport_options or {}
        limit = float(options.get("visibility_timeout") or REDIS_VISIBILITY_TIMEOUT_S)
        what = f"the broker's visibility_timeout ({limit:g} s)"
    else:
        return []
    if cap <= limit / 2:
        return []
    return [
        Warning(
            f"RUNS_MAX_COUNTDOWN_S = {cap:g} s is more than half of {what}: long countdowns "
            "would be delivered again while they wait.",
            hint="Lower RUNS_MAX_COUNTDOWN_S (longer waits are reached by hops) or raise the "
            "broker's timeout (docs/celery.md).",
            id="runs.W304",
        )
    ]


#: kombu's Redis default, and RabbitMQ's lowest (15 min from 3.8.15; 30 min from 3.8.17 on).
REDIS_VISIBILITY_TIMEOUT_S = 3600.0
RABBITMQ_CONSUMER_TIMEOUT_S = 900.0


def _name(queue: Any) -> str:
    return str(getattr(queue, "name", queue))


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
