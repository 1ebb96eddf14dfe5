"""A run end to end: real Celery worker, real Redis, the simulator over HTTP via the real SDK."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime

import pytest
from celery.signals import task_postrun
from django.utils import timezone
from openai import OpenAI

from runs.engine import writer
from runs.models import Run
from runs.schedule import Schedule, schedule_for
from runs.services import create_run
from runs.status import ACTIVE
from runs.tasks import poll_run, start_run

pytestmark = pytest.mark.integration


def remote(simulator, run: Run) -> dict:
    return simulator.stats()["objects"][run.remote_id]


def test_a_run_goes_pending_queued_in_progress_completed(worker, simulator, wait_terminal):
    run = create_run("What is 2 + 2?", metadata={"sim_duration_s": "3", "sim_outcome": "completed"})
    start_run.delay(run.pk)
    run = wait_terminal(run.pk, timeout=30)

    assert run.status == "completed"
    assert "2 + 2" in run.output_text
    assert list(run.events.values_list("from_status", "to_status")) == [
        ("pending", "queued"),
        ("queued", "in_progress"),
        ("in_progress", "completed"),
    ]
    # Never more retrieves than the schedule allows for a 3 s run (jitter may add one); a loaded
    # machine runs polls late and makes fewer, which is the schedule working, not a fault.
    schedule: Schedule = schedule_for(run.strategy)
    retrieves = remote(simulator, run)["retrieve"]
    assert 1 <= retrieves <= schedule.predicted_polls(3.0) + 1
    assert run.polls == retrieves
    assert run.api_calls == retrieves + 2  # conversation + response create
    # The usage kept is the server's (read after the counts: this read is one more retrieve).
    server = OpenAI(base_url=simulator.base_url, api_key="sk-test", max_retries=0)
    assert run.usage == server.responses.retrieve(run.remote_id).usage.model_dump()


def test_a_failed_run_keeps_its_error(worker, simulator, wait_terminal):
    run = create_run("fail please", metadata={"sim_duration_s": "1", "sim_outcome": "failed"})
    start_run.delay(run.pk)
    run = wait_terminal(run.pk, timeout=30)
    assert run.status == "failed"
    assert run.last_error and run.last_error_code
    assert run.output_text == ""


def test_an_incomplete_run_says_why(worker, simulator, wait_terminal):
    run = create_run("long", metadata={"sim_duration_s": "1", "sim_outcome": "incomplete"})
    start_run.delay(run.pk)
    run = wait_terminal(run.pk, timeout=30)
    assert run.status == "incomplete"
    assert "incomplete" in run.last_error.lower()


def test_the_deadline_expires_a_run_and_cancels_it_remotely(worker, simulator, wait_terminal):
    run = create_run("slow", deadline_s=2.0, metadata={"sim_duration_s": "60"})
    start_run.delay(run.pk)
    run = wait_terminal(run.pk, timeout=30)
    assert run.status == "expired"
    assert run.last_error_code == "deadline_exceeded"
    assert "deadline of 2 s" in run.last_error
    obj = remote(simulator, run)
    assert obj["cancel"] == 1
    assert obj["status"] == "cancelled"


def test_two_deliveries_of_start_run_create_one_remote_response(worker, simulator, wait_terminal):
    run = create_run("twice", metadata={"sim_duration_s": "1"})
    start_run.delay(run.pk)
    start_run.delay(run.pk)
    run = wait_terminal(run.pk, timeout=30)
    assert simulator.stats()["creates_by_run_id"][str(run.pk)] == 1


@pytest.fixture
def finished_polls() -> Iterator[dict[str, tuple[tuple, str]]]:
    """Poll ticks the worker has finished, ``{task id: (args, outcome)}``.

    The worker is a thread of this process, so Celery's ``task_postrun`` signal reaches us: a
    test knows a delivery was consumed without sleeping on it.
    """
    done: dict[str, tuple[tuple, str]] = {}

    def record(sender=None, task_id=None, args=None, retval=None, **kwargs) -> None:
        if sender is not None and sender.name == "runs.poll_run":
            done[task_id] = (tuple(args or ()), retval)

    task_postrun.connect(record, weak=False)
    yield done
    task_postrun.disconnect(record)


def wait_for(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Wait until ``check()`` holds; the timeout only bounds a hang."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.02)


def test_a_duplicate_or_stale_poll_makes_no_api_call(
    worker, simulator, settings, wait_until, finished_polls
):
    # The schedule's own polls wait minutes (their countdowns outlive the test): every poll that
    # runs here is one this test sent.
    settings.RUNS_POLL_BASE_S = settings.RUNS_POLL_CAP_S = 600.0
    run = create_run("dupes", metadata={"sim_duration_s": "300"})
    start_run.delay(run.pk)
    run = wait_until(run.pk, lambda r: r.status in ACTIVE and r.remote_id != "")  # created
    scheduled = run.poll_generation  # the first poll's ticket; its countdown is minutes away

    # A wake (as a webhook would) takes a fresh ticket and polls now: the scheduled poll is stale.
    assert writer.wake(run.pk)
    wait_for(
        lambda: any(args == (run.pk, scheduled + 1) for args, _ in finished_polls.values()),
        "the wake's poll ran",
    )
    run.refresh_from_db()
    current = run.poll_generation  # held by the poll the wake's tick re-armed, minutes away
    assert current == scheduled + 2
    # Make a poll due now, so a delivery of the current ticket retrieves rather than hops.
    Run.objects.filter(pk=run.pk).update(next_poll_at=timezone.now())
    retrieves, polls = remote(simulator, run)["retrieve"], run.polls

    # The current ticket delivered twice (a Redis redelivery while a worker still holds it) and
    # the stale one once (the scheduled poll firing after the wake), through the real broker.
    sent = [
        poll_run.delay(run.pk, current).id,
        poll_run.delay(run.pk, current).id,
        poll_run.delay(run.pk, scheduled).id,
    ]
    wait_for(lambda: all(task_id in finished_polls for task_id in sent), "the three polls ran")

    outcomes = sorted(finished_polls[task_id][1] for task_id in sent)
    assert outcomes.count("skipped") == 2  # one duplicate and the stale ticket
    assert remote(simulator, run)["retrieve"] == retrieves + 1
    run.refresh_from_db()
    assert run.polls == polls + 1
    assert run.poll_generation == current + 1  # the one tick that ran took the ticket


def test_many_runs_share_few_worker_slots(worker, simulator, wait_terminal):
    slots = worker.concurrency
    runs = [
        create_run(
            f"run {i}", metadata={"sim_duration_s": str(1 + i % 3), "sim_outcome": "completed"}
        )
        for i in range(20)
    ]
    for run in runs:
        start_run.delay(run.pk)
    finished = [wait_terminal(run.pk, timeout=60) for run in runs]
    assert [r.status for r in finished] == ["completed"] * 20
    # A task that waited for its run (a sleep between polls) would hold a worker slot from the
    # create to the end: never more runs in flight than slots. Between ticks no slot is held.
    assert most_at_once([(r.submitted_at, r.completed_at) for r in finished]) >= 2 * slots


def most_at_once(spans: list[tuple[datetime, datetime]]) -> int:
    """The most spans open at one instant (an end at the same instant as a start comes first)."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    open_now = most = 0
    for _, step in edges:
        open_now += step
        most = max(most, open_now)
    return most
