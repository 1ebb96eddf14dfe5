"""A worker killed in the middle of a tool round: the round is still submitted and the run ends.

A real worker subprocess is SIGKILLed at a kill point (``tests/kill_points.py``); a fresh worker
and Celery beat (running the recovery sweep) take over through the private Redis. The simulator
counts every tool output it receives per call id:

- killed after the round's submit claim, before the request left: the sweep releases the dead
  worker's claim, the outputs reach the server exactly once;
- killed after the server received the outputs, before their answer was saved: the outcome is
  unknown, so the round is submitted again; on Responses that makes a second response, which is
  counted on the call (``submit_attempts``) like a lost create, and never more than two.
"""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from runs.models import Run, ToolCall
from runs.services import create_run
from runs.status import TERMINAL
from runs.tasks import start_run
from runs_dev import processes

from .through_broker import wait_for

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("point", "most_submissions"), [("after_claim", 1), ("after_submit", 2)])
def test_a_worker_killed_mid_round_still_ends_the_run(
    point, most_submissions, redis_url, simulator, transactional_db, tmp_path
):
    queue = f"runs-kill-{uuid.uuid4().hex[:8]}"
    flag = tmp_path / "held"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DATABASE_URL": processes.database_url(),
        "CELERY_BROKER_URL": redis_url,
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "OPENAI_BASE_URL": simulator.base_url,
        "OPENAI_API_KEY": "sk-local-simulator",
        "OPENAI_CREATE_TIMEOUT_S": "2",
        # A claim is abandoned once no request of its worker can still be running.
        "RUNS_CLAIM_TIMEOUT_S": "3",
        "RUNS_SWEEP_INTERVAL_S": "1",
        "RUNS_SWEEP_GRACE_S": "1",
        "RUNS_POLL_BASE_S": "0.2",
        "RUNS_POLL_CAP_S": "1",
        # Beat starts after the kill: until then no run may go to runs.poll_due.
        "RUNS_POLL_AUTO_LATE_S": "3600",
        "RUNS_LOG_LEVEL": "ERROR",
    }
    children: list[subprocess.Popen[bytes]] = []
    try:
        with processes.pointed_at(
            broker_url=redis_url, queue=queue, openai_base_url=simulator.base_url
        ):
            killable = {**env, "RUNS_TEST_KILL_POINT": point, "RUNS_TEST_KILL_FLAG": str(flag)}
            children.append(
                processes.start_worker(
                    killable, concurrency=4, queue=queue, app="tests.kill_points"
                )
            )
            run = create_run(
                "What is 2 + 3?",
                tools=["add"],
                metadata={
                    "sim_duration_s": "0.3",
                    "sim_tool_rounds": "1",
                    "sim_tool_args": '{"a": 2, "b": 3}',
                    "sim_outcome": "completed",
                },
            )
            start_run.delay(run.pk)
            wait_for(flag.exists, f"the worker to reach {point}", timeout=60)
            processes.kill(children[0])
            children.append(processes.start_worker(env, concurrency=4, queue=queue))
            children.append(processes.start_beat(env, tmp_path))
            run = wait_for(
                lambda: (r := Run.objects.get(pk=run.pk)).status in TERMINAL and r,
                "the run to end after the kill",
                timeout=90,
            )
    finally:
        for child in children:
            processes.stop(child)

    assert run.status == "completed", (run.last_error, list(run.events.values_list("to_status")))
    call = ToolCall.objects.get(run=run)
    assert call.state == "submitted" and call.output == "5"
    received = simulator.stats()["tool_outputs_by_call_id"][call.call_id]
    assert 1 <= received <= most_submissions
    assert call.submit_attempts == received
