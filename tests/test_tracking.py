"""A run end to end: real Celery worker, real Redis, the simulator over HTTP via the real SDK."""

from __future__ import annotations

import time

import pytest

from runs.engine import lifecycle
from runs.models import Run
from runs.schedule import Schedule, schedule_for
from runs.services import create_run
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
    assert run.usage["total_tokens"] > 0
    assert list(run.events.values_list("from_status", "to_status")) == [
        ("pending", "queued"),
        ("queued", "in_progress"),
        ("in_progress", "completed"),
    ]
    # The retrieves are what the schedule predicts for a 3 s run (jitter may move one).
    schedule: Schedule = schedule_for(run.strategy)
    retrieves = remote(simulator, run)["retrieve"]
    assert abs(retrieves - schedule.predicted_polls(3.0)) <= 1
    assert run.polls == retrieves
    assert run.api_calls == retrieves + 2  # conversation + response create


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


def test_a_duplicate_or_stale_poll_makes_no_api_call(worker, simulator, wait_terminal):
    run = create_run("dupes", metadata={"sim_duration_s": "2"})
    start_run.delay(run.pk)
    run = wait_terminal(run.pk, timeout=30)
    before = remote(simulator, run)["retrieve"]
    # Replays of old tickets (a Redis redelivery, say) and a poll of a terminal run.
    for generation in range(run.poll_generation + 1):
        assert lifecycle.poll(run.pk, generation) == "skipped"
    poll_run.delay(run.pk, run.poll_generation)
    time.sleep(1.0)  # give the worker time to (not) call the API
    assert remote(simulator, run)["retrieve"] == before


def test_many_runs_share_few_worker_slots(worker, simulator, wait_terminal):
    runs = [
        create_run(
            f"run {i}", metadata={"sim_duration_s": str(1 + i % 3), "sim_outcome": "completed"}
        )
        for i in range(20)
    ]
    for run in runs:
        start_run.delay(run.pk)
    finished = [wait_terminal(run.pk, timeout=60) for run in runs]
    assert {r.status for r in finished} == {"completed"}
