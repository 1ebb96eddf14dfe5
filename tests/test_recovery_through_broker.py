"""Duplicates and races the engine must absorb, played through the real broker and worker.

Every task here travels through the private Redis to the real worker thread, which talks to the
simulator over HTTP. What reached OpenAI is counted by the simulator itself (creates per run id,
calls per remote object), never by our own counters.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from runs.engine import lifecycle
from runs.engine.sweep import sweep
from runs.models import Run
from runs.services import cancel_run, create_run
from runs.tasks import poll_run, start_run

from .through_broker import QUICK, calls_of, creates, faults, remote, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def fast_polls(settings) -> None:
    """A fast schedule: these tests are about who calls the API, not about the backoff."""
    settings.RUNS_POLL_BASE_S = 0.2
    settings.RUNS_POLL_CAP_S = 1.0


@pytest.fixture
def polls_seen(monkeypatch) -> list[tuple[int, int, str]]:
    """Every poll tick the worker runs, as ``(run id, ticket, outcome)``; calls through."""
    seen: list[tuple[int, int, str]] = []
    real_poll = lifecycle.poll

    def poll(run_id: int, ticket: int) -> str:
        outcome = real_poll(run_id, ticket)
        seen.append((run_id, ticket, outcome))
        return outcome

    monkeypatch.setattr(lifecycle, "poll", poll)
    return seen


def test_a_start_redelivered_while_the_run_is_active_creates_nothing(
    worker, simulator, wait_until, wait_terminal
):
    """A second ``start_run`` for a run OpenAI already runs (a Redis redelivery after the
    visibility timeout, say) finds the run no longer pending: no second remote create."""
    run = create_run("once", metadata={**QUICK, "sim_duration_s": "1.5"})
    start_run.delay(run.pk)
    wait_until(run.pk, lambda r: r.status == "in_progress")

    again = start_run.delay(run.pk).get(timeout=15)

    assert again == {
        "run_id": run.pk,
        "started": False,
        "reason": "already claimed or not pending",
    }
    run = wait_terminal(run.pk, timeout=30)
    assert run.status == "completed"
    assert creates(simulator, run) == 1
    assert remote(simulator, run)["create"] == 1
    assert list(run.events.values_list("from_status", "to_status", "source")) == [
        ("pending", "queued", "create"),
        ("queued", "in_progress", "poll"),
        ("in_progress", "completed", "poll"),
    ]


def test_the_sweeps_rearm_and_a_late_original_poll_make_one_retrieve_between_them(
    worker, simulator, settings, polls_seen, wait_until, wait_terminal
):
    """A run's poll is armed but its due time passes unseen (the worker holding it is stuck):
    the sweep wakes the run with a fresh ticket, and then the original poll shows up after all.
    Of the two, exactly one retrieves; the other finds its ticket taken."""
    # The first poll is armed 20 s out, so nothing but the two deliveries below polls the run.
    settings.RUNS_POLL_BASE_S = 20.0
    settings.RUNS_POLL_CAP_S = 20.0
    run = create_run("late poll", metadata=QUICK)
    assert start_run.delay(run.pk).get(timeout=15)["started"] is True
    run.refresh_from_db()
    assert run.status == "queued" and run.next_poll_at > timezone.now()
    original = run.poll_generation
    # Let it finish remotely, so the one retrieve that gets through ends the run.
    wait_for(lambda: remote(simulator, run)["status"] == "completed", "the remote response to end")
    retrieves_before = remote(simulator, run)["retrieve"]

    Run.objects.filter(pk=run.pk).update(next_poll_at=timezone.now() - timedelta(minutes=1))
    assert sweep().rearmed == 1
    poll_run.delay(run.pk, original)  # the original poll, arriving late

    fresh = original + 1
    wait_for(
        lambda: (
            {ticket for run_id, ticket, _ in polls_seen if run_id == run.pk} >= {original, fresh}
        ),
        "both deliveries to be consumed",
    )
    run = wait_terminal(run.pk, timeout=15)
    assert run.status == "completed"
    outcomes = {ticket: outcome for run_id, ticket, outcome in polls_seen if run_id == run.pk}
    assert outcomes == {original: "skipped", fresh: "completed"}
    assert remote(simulator, run)["retrieve"] - retrieves_before == 1
    assert run.polls == 1


def test_a_stale_start_claim_is_released_by_the_sweep_and_the_run_is_created_once(
    worker, simulator, settings, wait_terminal
):
    """A worker died between claiming the start and creating the run: the claim blocks every
    redelivered start until the sweep finds it older than ``RUNS_CLAIM_TIMEOUT_S``, releases it
    and starts the run again. The dead worker never reached OpenAI, so one create in all."""
    settings.RUNS_CLAIM_TIMEOUT_S = 2.0
    run = create_run("orphaned claim", metadata=QUICK)
    Run.objects.filter(pk=run.pk).update(start_claimed_at=timezone.now() - timedelta(hours=1))
    blocked = start_run.delay(run.pk).get(timeout=15)
    assert blocked["started"] is False  # the held claim stops a redelivered start

    first, second = sweep(), sweep()

    assert (first.reclaimed, first.restarted) == (1, 0)
    assert (second.reclaimed, second.restarted) == (0, 0)  # released once, started once
    run = wait_terminal(run.pk, timeout=30)
    assert run.status == "completed"
    assert creates(simulator, run) == 1


def test_a_run_cancelled_while_its_create_is_in_flight_is_cancelled_remotely_once_it_answers(
    worker, simulator, wait_until
):
    """The user cancels while the create is on the wire (the run is pending, its start
    claimed): the run is cancelled at once. When the create answers, the start sees the run
    cancelled, cancels the new remote response and arms no poll."""
    creates_before = calls_of(simulator, "responses.create")
    with faults(simulator, fault_slow_rate=1.0, slow_s=2.0, fault_only=["responses.create"]):
        run = create_run("cancel me", metadata={**QUICK, "sim_duration_s": "30"})
        started = start_run.delay(run.pk)
        wait_for(
            lambda: calls_of(simulator, "responses.create") > creates_before,
            "the create to reach the simulator",
        )
        run.refresh_from_db()
        assert run.status == "pending" and run.start_claimed_at is not None

        assert cancel_run(run, by="test") == "cancelled"
        run.refresh_from_db()
        assert run.status == "cancelled"  # at once, while the create still waits

        result = started.get(timeout=15)  # the create answered and the start is over

    assert result["started"] is True
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert run.remote_id == result["remote_id"]
    assert run.next_poll_at is None  # no poll armed: nothing will look at it again
    obj = remote(simulator, run)
    assert (obj["create"], obj["cancel"], obj["retrieve"]) == (1, 1, 0)
    assert obj["status"] == "cancelled"
    assert creates(simulator, run) == 1
    assert run.api_calls == 3  # the conversation, the response, the cancel
    assert list(run.events.values_list("from_status", "to_status", "source")) == [
        ("pending", "cancelled", "user"),
    ]
