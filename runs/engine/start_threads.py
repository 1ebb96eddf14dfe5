"""The threads a chunked start makes its API calls on (``starts``): a slot's own, kept."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django.db import connections

from ..conf import settings

T = TypeVar("T")
R = TypeVar("R")


def on_threads(work: Callable[[T], R], items: list[T]) -> list[R]:
    """``work`` over ``items`` on up to ``RUNS_START_CONCURRENCY`` threads, in order; API calls,
    but a pool thread's connection (a backend's lazy relation) is closed after each item."""
    threads = max(1, min(int(settings.RUNS_START_CONCURRENCY), len(items)))
    if threads == 1:
        return [work(item) for item in items]

    def in_thread(item: T) -> R:
        try:
            return work(item)
        finally:
            connections.close_all()

    return list(_slot_pool().map(in_thread, items))


_slot = threading.local()


def _slot_pool() -> ThreadPoolExecutor:
    """This worker slot's own pool of ``RUNS_START_CONCURRENCY`` threads, made once and kept.

    Why kept: a pool per call started its threads again for every wave, and starting threads was
    6 % of a chunked start's CPU. Why per slot: each task still has at most that many creates in
    flight, as when it had a pool of its own.
    """
    size = max(1, int(settings.RUNS_START_CONCURRENCY))
    if getattr(_slot, "size", None) != size:  # the first call, or the setting changed
        if old := getattr(_slot, "pool", None):
            old.shutdown(wait=False)
        _slot.pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="start-chunk")
        _slot.size = size
    pool: ThreadPoolExecutor = _slot.pool
    return pool
