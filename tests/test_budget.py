"""The shared poll budget: a Redis token bucket; creates first, polls deferred, never dropped.

The unit tests freeze the bucket's clock (``budget_clock``), so nothing refills unless a test
advances it and every grant and wait is exact.
"""

from __future__ import annotations

import heapq
import threading

import pytest
from prometheus_client import REGISTRY

from runs import budget
from runs.services import create_run
from runs.tasks import start_run


def test_no_budget_means_no_waiting(settings):
    settings.RUNS_MAX_RPS = 0
    assert all(budget.take("poll") == 0 for _ in range(100))


def test_a_burst_goes_then_calls_are_deferred_by_the_refill_time(token_bucket, budget_clock):
    assert [budget.take("create") for _ in range(5)] == [0] * 5
    assert budget.take("create") == 0.2  # one token at 5/s
    budget_clock.advance(0.25)  # 1.25 tokens refilled
    assert budget.take("create") == 0
    assert budget.take("create") == 0.15  # 0.25 token left: 0.75 to go


def test_the_bucket_keeps_redis_time_not_the_workers(token_bucket, redis_url):
    """Workers whose clocks disagree share one refill: no worker's clock is sent, the script
    reads Redis's own, so the refill's time is Redis's."""
    import redis

    budget.take("create")

    client = redis.Redis.from_url(redis_url)
    seconds, micros = client.time()
    assert float(client.hget(budget.KEY, "at")) == pytest.approx(seconds + micros / 1e6, abs=1)


def test_calls_deferred_together_are_given_one_slot_each(token_bucket, budget_clock):
    """A burst spent, each deferred call is told to come back one refill interval after the one
    before it: they come back one by one, as tokens refill, not all at once."""
    assert [budget.take("create") for _ in range(5)] == [0] * 5
    assert [budget.take("create") for _ in range(4)] == [0.2, 0.4, 0.6, 0.8]
    budget_clock.advance(0.2)  # the first comes back at its slot: its token is there
    assert budget.take("create") == 0
    budget_clock.advance(0.2)
    assert budget.take("create") == 0


def test_deferred_polls_queue_behind_deferred_creates(token_bucket, budget_clock):
    assert [budget.take("create") for _ in range(5)] == [0] * 5
    assert budget.take("create") == 0.2
    assert budget.take("create") == 0.4
    # A poll must leave the reserve (1 of 5) too: two tokens after the last deferred create.
    assert budget.take("poll") == 0.8
    assert budget.take("create") == 0.6  # a create deferred later still goes first...
    assert budget.take("poll") == 1.0  # ...and the next poll queues behind both


def drain(calls: int, clock, late_s: float = 0.003) -> tuple[int, float]:
    """Make ``calls`` creates at once, each deferred call coming back ``late_s`` after the wait it
    was told (a countdown's lateness) and asking again, until every call got a token. Returns
    (how many times the budget was asked, seconds from the first call to the last token)."""
    start = clock.now
    waiting = [(start, i) for i in range(calls)]
    asked = 0
    last = start
    while waiting:
        heapq.heapify(waiting)
        when, who = heapq.heappop(waiting)
        clock.now = when
        asked += 1
        wait = budget.take("create")
        if wait > 0:
            heapq.heappush(waiting, (when + wait + late_s, who))
        else:
            last = when
    return asked, last - start


def test_a_thousand_calls_deferred_together_drain_at_the_refill_rate(token_bucket, budget_clock):
    """Told only "a token is due in 0.2 s", 1,000 deferred calls would all come back together and
    all but one be deferred again: about 500,000 asks. Queued, each comes back to its token."""
    asked, took = drain(1000, budget_clock)
    assert asked < 2 * 1000
    # 5 went at once, the other 995 at 5 a second (and a countdown's lateness at the end).
    assert took == pytest.approx(995 / 5, abs=0.5)


def test_polls_leave_a_reserve_for_creates(token_bucket, budget_clock):
    # 5 tokens, 1 kept for creates: four polls go, then polls wait for the reserve to refill.
    assert [budget.take("poll") for _ in range(6)] == [0, 0, 0, 0, 0.2, 0.4]
    assert budget.take("create") == 0  # the reserve: a create arriving goes at once
    assert budget.take("create") == 0.2  # deferred, still ahead of the deferred polls


def test_the_smallest_bucket_holds_two_tokens_and_still_lets_polls_through(
    token_bucket, budget_clock
):
    """At 1 call/s a bucket of 1 s would hold one token, which a poll's 20 % reserve would
    leave no poll ever; two tokens leave polls the second, less the reserve."""
    token_bucket.RUNS_MAX_RPS = 1.0
    assert budget.take("poll") == 0
    assert budget.take("poll") == 0.4  # 1 token left, 1.4 needed
    budget_clock.advance(0.4)
    assert budget.take("poll") == 0


def test_many_threads_share_one_budget(token_bucket, budget_clock):
    waits: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def hammer() -> None:
        barrier.wait(timeout=10)
        for _ in range(20):
            wait = budget.take("create")
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(waits) == 160
    assert waits.count(0) == 5  # the burst, shared: no thread got a token of its own


def test_when_redis_is_unreachable_calls_go_ahead(settings):
    settings.RUNS_MAX_RPS = 1.0
    settings.RUNS_BUDGET_REDIS_URL = "redis://127.0.0.1:1/0"
    budget.reset_connection()
    try:
        assert budget.take("poll") == 0
    finally:
        budget.reset_connection()


def test_a_redis_that_hangs_costs_one_timeout_then_the_budget_pauses(
    settings, silent_redis, monkeypatch
):
    """Without a socket timeout a take would wait for ever, holding its worker slot; with one,
    the first call waits ``TIMEOUT_S`` and goes ahead, and the next calls do not ask Redis at
    all until the pause is over."""
    settings.RUNS_MAX_RPS = 5.0
    settings.RUNS_BUDGET_REDIS_URL = silent_redis
    budget.reset_connection()
    assert budget.take("create") == 0.0
    assert budget.paused.is_open()
    budget.reset_connection()

    asked: list[str] = []

    def script():
        asked.append("take")
        return lambda keys, args: 0

    script.cache_clear = lambda: None
    monkeypatch.setattr(budget, "_script", script)
    budget.paused.trip()
    assert [budget.take("poll") for _ in range(3)] == [0.0] * 3
    assert asked == []  # not asked while paused
    budget.paused.reset()  # the pause is over: asked again
    assert budget.take("poll") == 0.0 and asked == ["take"]


def deferred(kind: str) -> float:
    """Calls of ``kind`` the budget has deferred in this process (the worker is a thread of it)."""
    return REGISTRY.get_sample_value("runs_token_bucket_deferred_total", {"kind": kind}) or 0.0


@pytest.mark.integration
def test_runs_over_budget_are_deferred_and_still_finish(
    token_bucket, worker, simulator, wait_terminal
):
    token_bucket.RUNS_MAX_RPS = 3.0  # a burst of 3: six creates and their polls cannot all go now
    before = deferred("create") + deferred("poll")
    runs = [
        create_run(f"tight {i}", metadata={"sim_duration_s": "1", "sim_outcome": "completed"})
        for i in range(6)
    ]
    for run in runs:
        start_run.delay(run.pk)
    finished = [wait_terminal(run.pk, timeout=60) for run in runs]

    assert deferred("create") + deferred("poll") > before  # the budget did hold calls back
    assert [r.status for r in finished] == ["completed"] * 6  # ...and dropped none
    stats = simulator.stats()
    for run in finished:
        # A deferred call was made later, once: the server saw exactly what the run counted.
        assert stats["creates_by_run_id"][str(run.pk)] == 1
        assert stats["objects"][run.remote_id]["retrieve"] == run.polls
        assert run.api_calls == run.polls + 2  # conversation + response create


def test_a_poll_deferred_behind_a_long_queue_comes_back_by_its_deadline(
    token_bucket, budget_clock, run_row
):
    """The queue of deferred calls may be minutes long; a run's deadline is acted on in time."""
    from datetime import timedelta

    from django.utils import timezone

    from runs.engine import lifecycle

    run = run_row(
        "in_progress",
        remote_id="resp_1",
        next_poll_at=timezone.now(),
        deadline_at=timezone.now() + timedelta(seconds=3),
    )
    for _ in range(100):  # a hundred polls queued ahead of it: 20 s at 5 calls/s
        budget.take("poll")

    decision = lifecycle.decide_poll(run)

    assert decision.outcome == "deferred" and decision.poll_in_s <= 3.1


def test_a_slot_is_never_handed_further_than_a_countdown_reaches(token_bucket, budget_clock):
    """A start's countdown is capped at ``RUNS_MAX_COUNTDOWN_S``: told a slot further away, it
    would come back before it, ask again, and queue again at the end, for ever. So it holds
    none: it is told the cap, and asks again then."""
    token_bucket.RUNS_MAX_COUNTDOWN_S = 1.0
    assert [budget.take("create") for _ in range(5)] == [0] * 5
    assert [budget.take("create") for _ in range(6)] == [0.2, 0.4, 0.6, 0.8, 1.0, 1.0]
    assert budget.take("create") == 1.0  # the sixth took no slot: still one second of queue


def test_a_call_that_only_tries_takes_no_slot(token_bucket, budget_clock):
    """A start hands back the other runs of its chunk when the budget is spent: they ask again
    in their own tasks, so a slot held for them would be lost, and the queue longer for all."""
    assert [budget.take("create") for _ in range(5)] == [0] * 5
    assert budget.take("create", queue=False) == 0.2
    assert budget.take("create") == 0.2  # the slot is still free


def test_slots_nobody_came_back_for_are_given_again(token_bucket, budget_clock):
    """A thousand calls deferred, then their runs ended: nobody takes the refill. Once the bucket
    is full again, a call deferred waits for the refill, not behind the thousand lost slots."""
    assert [budget.take("create") for _ in range(5)] == [0] * 5
    assert max(budget.take("create") for _ in range(1000)) == 200.0
    budget_clock.advance(3.0)  # nobody came back: the bucket filled up, 2 s ago
    assert [budget.take("create") for _ in range(5)] == [0] * 5
    assert budget.take("create") == 0.2


def test_a_call_back_late_to_its_slot_leaves_the_next_call_its_token(token_bucket, budget_clock):
    """At 1 call a second a bucket of one token would be full at a slot its call comes back to
    20 ms late: that refill lost, the next call, back only 10 ms late, would be short of its
    token and queue again at the end. The bucket holds two: nothing is lost."""
    token_bucket.RUNS_MAX_RPS = 1.0
    assert [budget.take("create") for _ in range(2)] == [0, 0]
    assert [budget.take("create") for _ in range(2)] == [1.0, 2.0]
    budget_clock.advance(1.02)
    assert budget.take("create") == 0
    budget_clock.advance(0.99)
    assert budget.take("create") == 0


def test_a_new_rate_starts_a_new_queue(token_bucket, budget_clock):
    token_bucket.RUNS_MAX_RPS = 1.0
    assert [budget.take("create") for _ in range(2)] == [0, 0]
    assert max(budget.take("create") for _ in range(100)) == 100.0
    token_bucket.RUNS_MAX_RPS = 100.0  # raised: 100 tokens a second, the bucket of 1 s empty
    assert budget.take("create") == 0.01


def test_a_deferred_call_is_never_told_to_go(token_bucket, budget_clock):
    """At 2,000 calls a second a call can miss its token by less than a millisecond's refill;
    its wait is still at least 1 ms, since 0 means "a token was taken"."""
    token_bucket.RUNS_MAX_RPS = 2000.0
    assert [budget.take("create") for _ in range(2000)] == [0] * 2000
    budget_clock.advance(0.5 / 2000 - 1e-9)  # half a token
    assert budget.take("create") == 0.001
