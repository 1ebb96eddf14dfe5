"""The project's Celery app plus a probe that records, per task, how late it ran and its CPU.

Why a probe in the worker: the figure "poll lateness" is how long after its countdown a tick
really starts, which only the worker knows (``task.request.eta``); and the CPU a tick costs is
best read per thread (``time.thread_time``) around the task body. Records go to a Redis list in
the bench's private Redis, one short string per task, read back after the scenario.
Start the worker with ``celery -A bench.celery_app worker``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import datetime
from typing import Any

import redis
from celery.signals import task_postrun, task_prerun

from project.celery import app

__all__ = ["app", "LATENESS_KEY"]

#: Redis list of ``name,lateness_s,wall_s,cpu_s`` records (lateness empty without an ETA).
LATENESS_KEY = "bench:tasks"

_local = threading.local()
_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(app.conf.broker_url)
    return _client


@task_prerun.connect
def _before(task: Any = None, **_: Any) -> None:
    eta = getattr(task.request, "eta", None) if task is not None else None
    lateness = ""
    if eta:
        due = eta if isinstance(eta, datetime) else datetime.fromisoformat(str(eta))
        lateness = f"{time.time() - due.timestamp():.4f}"
    _local.started = (time.perf_counter(), time.thread_time(), lateness)


@task_postrun.connect
def _after(task: Any = None, **_: Any) -> None:
    started = getattr(_local, "started", None)
    if started is None or task is None:
        return
    wall0, cpu0, lateness = started
    record = (
        f"{task.name},{lateness},{time.perf_counter() - wall0:.5f},{time.thread_time() - cpu0:.5f}"
    )
    with contextlib.suppress(redis.RedisError):  # a probe must never break a task
        _redis().rpush(LATENESS_KEY, record)
