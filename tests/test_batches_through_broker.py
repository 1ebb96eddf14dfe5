"""Batches end to end: a real worker, the private Redis, the simulator's Files and Batches APIs
over HTTP through the ``openai`` SDK.

What reached OpenAI is counted by the simulator (calls per object, lines per ``custom_id``: a
run batched twice would count 2), what we did by our own rows. Our clock is compressed
(``RUNS_TIME_SCALE``) so a batch's poll schedule (30 s x 1.5 up to 10 min on the real clock)
takes a fraction of a second; the simulator's batches take a couple of seconds.
"""

from __future__ import annotations

import io
import os
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from runs import services
from runs.models import Batch, Run, RunEvent
from runs_dev import processes
from runs_simulator.batch_lines import line_fails

from .through_broker import wait_for

pytestmark = pytest.mark.integration

#: The simulator's batch timing as it starts (runs_simulator/config.py): what tests restore.
SIM_BATCH_DEFAULTS = {
    "batch_validating_s": 0.3,
    "batch_duration_s": 2.0,
    "batch_finalizing_s": 0.3,
    "batch_cancel_lag_s": 0.3,
    "batch_line_failure_rate": 0.0,
    "batch_force": None,
}


@pytest.fixture
def sim_batches(simulator) -> Iterator[object]:
    """Quick batches at the simulator; its defaults again after the test."""
    simulator.configure(batch_validating_s=0.2, batch_duration_s=1.0, batch_finalizing_s=0.2)
    yield simulator
    simulator.configure(**SIM_BATCH_DEFAULTS)


@pytest.fixture
def our_clock(settings) -> None:
    """Our side of the time scale: a batch's 30 s first poll is 0.3 s, its 10 min cap 6 s."""
    settings.RUNS_TIME_SCALE = 0.01


def ended(batch_id: int, timeout: float = 30.0) -> Batch:
    return wait_for(
        lambda: (b := Batch.objects.get(pk=batch_id)).is_terminal and b,
        f"batch {batch_id} to end",
        timeout=timeout,
    )


def statuses(batch: Batch) -> Counter[str]:
    return Counter(batch.runs.values_list("status", flat=True))


def lines_sent(simulator, batch: Batch) -> Counter[int]:
    """How many times each run of the batch reached the simulator as a batch line."""
    counts = simulator.stats(objects=False)["batch_lines_by_custom_id"]
    return Counter(
        {run_id: counts.get(str(run_id), 0) for run_id in batch.runs.values_list("pk", flat=True)}
    )


def test_a_polled_batch_settles_each_run_from_its_line(worker, sim_batches, our_clock):
    sim_batches.configure(batch_line_failure_rate=0.1)
    batch = services.create_batch([f"What is {i} + {i}?" for i in range(50)], strategy="poll")
    batch = ended(batch.pk)

    assert batch.status == "completed" and batch.results_applied_at is not None
    failing = {r.pk for r in batch.runs.all() if line_fails(str(r.pk), 0.1)}
    assert 0 < len(failing) < 50
    for run in batch.runs.all():
        if run.pk in failing:
            assert (run.status, run.last_error_code) == ("failed", "server_error"), run.pk
        else:
            assert run.status == "completed", (run.pk, run.last_error)
            assert run.output_text and run.remote_id.startswith("resp_") and run.usage
        assert list(run.events.values_list("from_status", "to_status")) in (
            [("pending", "queued"), ("queued", "in_progress"), ("in_progress", run.status)],
            [("pending", "queued"), ("queued", run.status)],
        )
    assert batch.request_counts == {
        "total": 50,
        "completed": 50 - len(failing),
        "failed": len(failing),
    }
    assert set(lines_sent(sim_batches, batch).values()) == {1}
    # upload + create + the retrieves + the output and error downloads
    assert batch.api_calls == 2 + batch.polls + 2
    assert batch.runs.filter(api_calls__gt=0).count() == 0


def test_a_batch_tracked_by_webhook_costs_one_retrieve_after_its_submit(
    worker, sim_batches, our_clock, webhook_delivery
):
    batch = services.create_batch(["one", "two", "three"], strategy="webhook")
    batch = ended(batch.pk)

    assert batch.status == "completed" and statuses(batch) == {"completed": 3}
    assert (batch.webhook_events, batch.polls) == (1, 1)
    assert batch.api_calls == 1 + 1 + 1 + 1  # upload, create, one retrieve, the output file
    assert batch.webhook_deliveries.get().type == "batch.completed"


def test_an_expired_batch_keeps_what_finished_and_expires_the_rest(worker, sim_batches, our_clock):
    sim_batches.configure(batch_force="expired", batch_duration_s=2.0)
    batch = ended(services.create_batch([f"p{i}" for i in range(20)]).pk)

    counts = statuses(batch)
    assert batch.status == "expired"
    assert counts["expired"] > 0 and counts["completed"] + counts["expired"] == 20
    late = batch.runs.filter(status="expired").first()
    assert late.last_error_code == "batch_expired"


def test_a_cancelled_batch_cancels_every_run_still_open(worker, sim_batches, our_clock):
    sim_batches.configure(batch_duration_s=30.0)
    batch = services.create_batch([f"p{i}" for i in range(10)])
    wait_for(lambda: Batch.objects.get(pk=batch.pk).status == "in_progress", "the batch to run")
    assert services.cancel_batch(batch) == "cancelling"
    batch = ended(batch.pk)

    assert batch.status == "cancelled"
    assert statuses(batch) == {"cancelled": 10}
    assert batch.runs.first().last_error_code == "batch_cancelled"
    with pytest.raises(Exception, match="already ended"):
        services.cancel_batch(batch)


def test_a_batch_not_sent_yet_is_cancelled_at_once(sent_tasks, transactional_db):
    batch = services.create_batch(["a", "b"])
    assert services.cancel_batch(batch) == "cancelled"
    batch.refresh_from_db()
    assert batch.status == "cancelled" and statuses(batch) == {"cancelled": 2}


def startbatch(*args: str) -> tuple[str, int]:
    out = io.StringIO()
    try:
        call_command("startbatch", *args, stdout=out)
    except CommandError as exc:
        return out.getvalue(), exc.returncode
    return out.getvalue(), 0


def test_startbatch_exits_0_when_every_run_completed_and_1_otherwise(
    worker, sim_batches, our_clock, tmp_path
):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("What is 2 + 2?\n\nName a colour.\n")
    out, code = startbatch("--file", str(prompts), "--wait", "--timeout", "30")
    assert code == 0, out
    assert out.splitlines()[0].startswith("batch ") and "2 runs" in out
    assert "completed: 2 completed" in out

    out, code = startbatch(
        "--file", str(prompts), "--wait", "--timeout", "30", "--metadata", "sim_outcome=failed"
    )
    assert code == 1 and "2 failed" in out


def test_startbatch_exits_2_on_a_missing_or_empty_file(tmp_path, transactional_db):
    assert startbatch("--file", str(tmp_path / "nope.txt"))[1] == 2
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    assert startbatch("--file", str(empty))[1] == 2
    assert Batch.objects.count() == 0 and Run.objects.count() == 0


# --- a worker killed mid-batch ---------------------------------------------------------------


def kill_env(redis_url: str, simulator, queue: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DATABASE_URL": processes.database_url(),
        "CELERY_BROKER_URL": redis_url,
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "OPENAI_BASE_URL": simulator.base_url,
        "OPENAI_API_KEY": "sk-local-simulator",
        "RUNS_TIME_SCALE": "0.01",
        # A claim (or a poll's lease) is abandoned once no request of its worker can be running:
        # a submit's after its list search and create (3 pages x 2 s + 3 s) plus this margin.
        "RUNS_CLAIM_TIMEOUT_S": "3",
        "OPENAI_TIMEOUT_S": "2",
        "OPENAI_CREATE_TIMEOUT_S": "3",
        "RUNS_SWEEP_INTERVAL_S": "1",
        "RUNS_SWEEP_GRACE_S": "1",
        "RUNS_LOG_LEVEL": "ERROR",
    }


def run_with_a_kill(point: str, redis_url, simulator, tmp_path, make_batch) -> Batch:
    """Start a worker that dies at ``point``, make the batch, kill it there, let a fresh worker
    and beat (the sweep) take over; the batch as it ended."""
    queue = f"runs-kill-{uuid.uuid4().hex[:8]}"
    flag = tmp_path / "held"
    env = kill_env(redis_url, simulator, queue)
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
            batch = make_batch()
            wait_for(flag.exists, f"the worker to reach {point}", timeout=60)
            processes.kill(children[0])
            children.append(processes.start_worker(env, concurrency=4, queue=queue))
            children.append(processes.start_beat(env, tmp_path))
            return ended(batch.pk, timeout=60)
    finally:
        for child in children:
            processes.stop(child)


def test_a_thousand_runs_with_failed_lines_end_right_despite_a_kill_and_a_duplicate_webhook(
    redis_url, sim_batches, transactional_db, tmp_path, client, webhook_secret, signed
):
    """3 % of the lines fail at OpenAI; the worker dies after settling the first 500 runs; the
    sweep hands the batch to a fresh worker, which settles the rest; then ``batch.completed``
    arrives twice. Exactly the failed lines' runs are failed, every other run completed, each
    run moved once, and the webhooks change nothing."""
    sim_batches.configure(batch_line_failure_rate=0.03)
    prompts = [f"Question {i}: what is {i} x 2?" for i in range(1000)]

    batch = run_with_a_kill(
        "batch_mid_settle",
        redis_url,
        sim_batches,
        tmp_path,
        lambda: services.create_batch(prompts, strategy="poll"),
    )

    failing = {pk for pk in batch.runs.values_list("pk", flat=True) if line_fails(str(pk), 0.03)}
    assert 10 < len(failing) < 60
    assert batch.status == "completed"
    assert set(batch.runs.filter(status="failed").values_list("pk", flat=True)) == failing
    assert batch.runs.filter(status="completed").count() == 1000 - len(failing)
    assert batch.request_counts["failed"] == len(failing)
    ends = RunEvent.objects.filter(run__batch=batch, to_status__in=["completed", "failed"])
    assert ends.count() == 1000  # each run ended once, kill or no kill
    first, last = ends.earliest("at").at, ends.latest("at").at
    assert (last - first).total_seconds() > 2  # half before the kill, half after the handover
    assert set(lines_sent(sim_batches, batch).values()) == {1}

    before = (
        list(batch.runs.order_by("pk").values_list("status", "completed_at")),
        RunEvent.objects.filter(run__batch=batch).count(),
        Batch.objects.filter(pk=batch.pk).values_list("api_calls", "polls", "cost").get(),
    )
    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": "batch.completed",
        "created_at": 1_700_000_000,
        "data": {"id": batch.remote_id},
    }
    body, headers = signed(event, secret=webhook_secret)
    meta = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    first = client.post("/webhooks/openai/", body, content_type="application/json", **meta)
    second = client.post("/webhooks/openai/", body, content_type="application/json", **meta)
    assert first.json() == {"status": "ok", "outcome": "stale"}
    assert second.json()["status"] == "duplicate"
    after = (
        list(batch.runs.order_by("pk").values_list("status", "completed_at")),
        RunEvent.objects.filter(run__batch=batch).count(),
        Batch.objects.filter(pk=batch.pk).values_list("api_calls", "polls", "cost").get(),
    )
    assert after == before


def test_a_submit_killed_after_the_create_does_not_create_a_second_batch(
    redis_url, sim_batches, transactional_db, tmp_path
):
    """The worker dies after OpenAI created the batch, before its id was saved: the sweep
    releases the claim once the dead worker's create could no longer be under way
    (``batch_writer.submit_claim_s``), and the next submit finds that batch (our id and input
    file in its metadata) instead of sending the runs again."""
    batch = run_with_a_kill(
        "batch_after_create",
        redis_url,
        sim_batches,
        tmp_path,
        lambda: services.create_batch(["one", "two", "three"], strategy="poll"),
    )

    assert batch.status == "completed" and statuses(batch) == {"completed": 3}
    assert set(lines_sent(sim_batches, batch).values()) == {1}
    assert batch.api_calls >= 1 + 1 + 1 + 1 + 1  # upload, create, the list, a retrieve, output
