"""The shared poll budget: a Redis token bucket; creates first, polls deferred, never dropped."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from runs import budget
from runs.services import create_run
from runs.tasks import start_run


@pytest.fixture
def bucket(settings, redis_url):
    settings.RUNS_BUDGET_REDIS_URL = redis_url
    settings.RUNS_MAX_RPS = 5.0
    settings.RUNS_BUDGET_BURST_S = 1.0
    budget.reset_connection()
    redis.Redis.from_url(redis_url).delete(budget.KEY)
    yield settings
    redis.Redis.from_url(redis_url).delete(budget.KEY)
    budget.reset_connection()


def test_no_budget_means_no_waiting(settings):
    settings.RUNS_MAX_RPS = 0
    assert all(budget.take("poll") == 0 for _ in range(100))


def test_a_burst_goes_then_calls_are_deferred_by_the_refill_time(bucket):
    assert [budget.take("create") for _ in range(5)] == [0] * 5
    wait = budget.take("create")
    assert 0 < wait <= 0.25  # one token at 5/s


def test_polls_leave_a_reserve_for_creates(bucket):
    granted_polls = 0
    while budget.take("poll") == 0:
        granted_polls += 1
    assert granted_polls == 4  # 5 tokens, 1 kept for creates
    assert budget.take("create") == 0  # the reserve
    assert budget.take("create") > 0


def test_many_threads_share_one_budget(bucket):
    granted: list[float] = []
    lock = threading.Lock()
    started = time.monotonic()

    def hammer() -> None:
        for _ in range(20):
            if budget.take("create") == 0:
                with lock:
                    granted.append(time.monotonic())

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert len(granted) <= 5 + 5 * elapsed + 1


def test_when_redis_is_unreachable_calls_go_ahead(settings):
    settings.RUNS_MAX_RPS = 1.0
    settings.RUNS_BUDGET_REDIS_URL = "redis://127.0.0.1:1/0"
    budget.reset_connection()
    try:
        assert budget.take("poll") == 0
    finally:
        budget.reset_connection()


@pytest.mark.integration
def test_runs_over_budget_are_deferred_and_still_finish(bucket, worker, simulator, wait_terminal):
    bucket.RUNS_MAX_RPS = 3.0
    runs = [
        create_run(f"tight {i}", metadata={"sim_duration_s": "1", "sim_outcome": "completed"})
        for i in range(6)
    ]
    for run in runs:
        start_run.delay(run.pk)
    finished = [wait_terminal(run.pk, timeout=60) for run in runs]
    assert {r.status for r in finished} == {"completed"}
