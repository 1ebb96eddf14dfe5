"""The project's Celery app plus a probe that records, per task, how late it ran and its CPU.

Why a probe in the worker: the figure "poll lateness" is how long after its countdown a tick
really starts, which only the worker knows (``task.request.eta``); and the CPU a tick costs is
best read per thread (``time.thread_time``) around the task body. Records go to a Redis list in
the bench's private Redis, one short string per task, read back after the scenario.
Start the worker with ``celery -A bench.celery_app worker``.

The records also carry the database queries of each task (a Django execute wrapper around the task
body), and failures/retries go to their own list, so "no task errors" is counted, not assumed.
The records live in Redis (``REDIS_URL``) even when the broker is RabbitMQ. ``bench.bare_tick``
is the baseline for the tick rate (bench/tick_rate.py): a task that does nothing but enqueue its
next tick with a countdown, as a poll tick does.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from datetime import datetime
from typing import Any

import redis
from celery import shared_task
from celery.signals import task_failure, task_postrun, task_prerun, task_retry
from django.db import connection

from project.celery import app

__all__ = ["app", "LATENESS_KEY", "FAILURES_KEY", "bare_tick"]

#: Redis list of ``name,lateness_s,wall_s,cpu_s,queries,hostname`` records (lateness empty
#: without an ETA).
LATENESS_KEY = "bench:tasks"
#: Redis list of ``failure|retry,task name,exception type`` records.
FAILURES_KEY = "bench:failures"

_local = threading.local()
_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ.get("REDIS_URL") or app.conf.broker_url)
    return _client


class _QueryCounter:
    """A Django execute wrapper that counts the statements a task sends."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.count += 1
        return execute(sql, params, many, context)


@task_prerun.connect
def _before(task: Any = None, **_: Any) -> None:
    eta = getattr(task.request, "eta", None) if task is not None else None
    lateness = ""
    if eta:
        due = eta if isinstance(eta, datetime) else datetime.fromisoformat(str(eta))
        lateness = f"{time.time() - due.timestamp():.4f}"
    counter = _QueryCounter()
    connection.execute_wrappers.append(counter)
    _local.started = (time.perf_counter(), time.thread_time(), lateness, counter)


@task_postrun.connect
def _after(task: Any = None, **_: Any) -> None:
    started = getattr(_local, "started", None)
    if started is None or task is None:
        return
    wall0, cpu0, lateness, counter = started
    _local.started = None
    with contextlib.suppress(ValueError):
        connection.execute_wrappers.remove(counter)
    record = (
        f"{task.name},{lateness},{time.perf_counter() - wall0:.5f},"
        f"{time.thread_time() - cpu0:.5f},{counter.count},{task.request.hostname or ''}"
    )
    with contextlib.suppress(redis.RedisError):  # a probe must never break a task
        _redis().rpush(LATENESS_KEY, record)


@task_failure.connect
def _failed(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
    _record_failure("failure", sender, exception)


@task_retry.connect
def _retried(sender: Any = None, reason: Any = None, **_: Any) -> None:
    _record_failure("retry", sender, reason)


def _record_failure(kind: str, task: Any, error: Any) -> None:
    name = getattr(task, "name", "?")
    with contextlib.suppress(redis.RedisError):
        _redis().rpush(FAILURES_KEY, f"{kind},{name},{type(error).__name__}")


@shared_task(name="bench.bare_tick", ignore_result=True)
def bare_tick(chain: int, until: float, countdown: float) -> None:
    """Nothing but the next tick of this chain, ``countdown`` s later, until ``until`` (epoch).

    The baseline a real poll tick is compared with: same worker, same broker, same countdown path
    (an ETA task), no database and no API call.
    """
    if time.time() < until:
        bare_tick.apply_async((chain, until, countdown), countdown=countdown)
