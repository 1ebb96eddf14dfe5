"""The JSON API end to end: a request enqueues a task on commit, Redis carries it, the real worker
tracks the run against the simulator, and the API serves what the worker wrote.

``tests/test_api.py`` checks each operation with the broker stubbed out; here nothing is.
"""

from __future__ import annotations

import json

import pytest
from django.core.cache import caches
from django_celery_results.models import TaskResult

from .through_broker import QUICK, remote, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def fast_polls(settings) -> None:
    settings.RUNS_POLL_BASE_S = 0.2
    settings.RUNS_POLL_CAP_S = 1.0
    caches["default"].clear()  # the throttles' history: earlier tests' starts do not count here


def timeline(body: dict) -> list[tuple[str, str, str]]:
    return [(e["from_status"], e["to_status"], e["source"]) for e in body["events"]]


def test_a_run_posted_to_the_api_is_completed_by_the_worker_and_served_with_its_timeline(
    api, worker, simulator, wait_terminal
):
    posted = api.post(
        "/runs", {"text": "What is 2 + 2?", "metadata": {**QUICK, "sim_duration_s": "1"}}
    )
    assert posted.status_code == 201
    assert posted.json()["status"] == "pending"
    run = wait_terminal(posted.json()["id"], timeout=30)

    body = api.get(f"/runs/{run.pk}").json()

    assert (body["status"], body["terminal"]) == ("completed", True)
    assert "2 + 2" in body["output_text"]
    assert timeline(body) == [
        ("pending", "queued", "create"),
        ("queued", "in_progress", "poll"),
        ("in_progress", "completed", "poll"),
    ]
    assert body["polls"] == remote(simulator, run)["retrieve"]
    assert body["api_calls"] == body["polls"] + 2  # the conversation and the response


def test_a_run_cancelled_through_the_api_is_cancelled_at_openai_by_the_cancel_task(
    api, worker, simulator, wait_until, wait_terminal
):
    posted = api.post(
        "/runs", {"text": "Take your time", "metadata": {**QUICK, "sim_duration_s": "30"}}
    )
    run_id = posted.json()["id"]
    wait_until(run_id, lambda r: r.status == "in_progress")

    cancelled = api.post(f"/runs/{run_id}/cancel")

    assert cancelled.status_code == 202
    assert cancelled.json()["status"] == "cancelling"  # the request never waits on OpenAI
    run = wait_terminal(run_id, timeout=30)
    body = api.get(f"/runs/{run_id}").json()
    assert body["status"] == "cancelled"
    assert timeline(body)[-2:] == [
        ("in_progress", "cancelling", "user"),
        ("cancelling", "cancelled", "user"),
    ]
    assert body["events"][-2]["detail"] == {"requested_by": "api"}
    obj = remote(simulator, run)
    assert (obj["cancel"], obj["status"]) == (1, "cancelled")
    # The one cancel call was made by the runs.cancel_run task, which the worker ran.
    task = wait_for(
        lambda: TaskResult.objects.filter(task_name="runs.cancel_run").first(),
        "the cancel task's result",
    )
    assert (task.status, json.loads(task.result)) == ("SUCCESS", "cancelled")
