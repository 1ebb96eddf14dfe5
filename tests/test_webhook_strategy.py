"""Webhooks short-circuit polling: one retrieve per run, and a lost webhook never strands a run.

Real worker, real Redis, the simulator delivering signed events over HTTP to our endpoint on a
live server thread, and the real SDK both ways.
"""

from __future__ import annotations

import time

import pytest
from openai import OpenAI

from runs.backends.responses import ResponsesBackend, to_state
from runs.engine import lifecycle
from runs.models import WebhookEvent
from runs.services import create_run
from runs.tasks import start_run

pytestmark = pytest.mark.integration


def retrieves(simulator, run) -> int:
    return simulator.stats()["objects"][run.remote_id]["retrieve"]


def test_every_run_tracked_by_webhook_costs_one_retrieve(
    webhook_delivery, simulator, wait_terminal
):
    outcomes = ["completed"] * 6 + ["failed", "incomplete", "cancelled"]
    runs = [
        create_run(
            f"hello {i}",
            strategy="webhook",
            metadata={"sim_duration_s": str(0.5 + (i % 3) * 0.5), "sim_outcome": outcome},
        )
        for i, outcome in enumerate(outcomes)
    ]
    for run in runs:
        start_run.delay(run.pk)
    finished = [wait_terminal(run.pk, timeout=30) for run in runs]

    assert [r.status for r in finished] == outcomes
    assert [retrieves(simulator, r) for r in finished] == [1] * len(runs)
    assert [r.webhook_events for r in finished] == [1] * len(runs)
    assert all(r.events.last().source == "poll" for r in finished)  # the woken poll


def test_duplicate_deliveries_have_one_effect(webhook_delivery, simulator, wait_terminal):
    simulator.configure(webhook_duplicate_rate=1.0)
    run = create_run(
        "twice", strategy="webhook", metadata={"sim_duration_s": "0.5", "sim_outcome": "completed"}
    )
    start_run.delay(run.pk)
    run = wait_terminal(run.pk, timeout=30)
    assert retrieves(simulator, run) == 1
    assert run.webhook_events == 1


@pytest.mark.parametrize("mode", ["batched", "per_run"])
def test_a_dropped_webhook_delays_a_run_but_the_safety_net_finishes_it(
    webhook_delivery, simulator, wait_terminal, settings, mode, beat_sending_poll_due
):
    """By default (``RUNS_SAFETY_NET_MODE = "batched"``) the safety net is a due time that
    beat's ``runs.poll_due`` finds (sent here every 0.2 s, as beat would, through the broker to
    the worker); with "per_run" it is a countdown task of the run's own."""
    settings.RUNS_SAFETY_NET_MODE = mode
    settings.RUNS_SAFETY_NET_BASE_S = 1.0
    simulator.configure(webhook_drop_rate=1.0)
    run = create_run(
        "lost", strategy="webhook", metadata={"sim_duration_s": "0.5", "sim_outcome": "completed"}
    )
    start_run.delay(run.pk)
    with beat_sending_poll_due(every_s=0.2 if mode == "batched" else None):
        run = wait_terminal(run.pk, timeout=30)
    assert run.status == "completed"
    assert run.webhook_events == 0
    # The first safety-net poll (1 s after the create, the run ended at 0.5 s) saw the end.
    assert retrieves(simulator, run) == run.polls == 1


def test_an_event_that_beats_the_create_commit_is_applied_once_the_id_is_saved(
    webhook_delivery, simulator, wait_terminal, monkeypatch
):
    # The response exists and has finished (and its webhook was delivered) before start_run
    # saves its id: exactly the window between the create call returning and our commit.
    client = OpenAI(base_url=simulator.base_url, api_key="sk-test", max_retries=0)
    early = client.responses.create(
        model="m",
        input="early",
        background=True,
        metadata={"sim_duration_s": "0.1", "sim_outcome": "completed"},
    )
    give_up = time.monotonic() + 5
    while not WebhookEvent.objects.filter(object_id=early.id).exclude(outcome="received"):
        assert time.monotonic() < give_up, "the simulator did not deliver the webhook"
        time.sleep(0.05)
    assert WebhookEvent.objects.get(object_id=early.id).outcome == "unknown_object"

    monkeypatch.setattr(ResponsesBackend, "create", lambda self, run, *args: to_state(early))
    run = create_run("late", strategy="webhook")
    lifecycle.start(run.pk)
    run = wait_terminal(run.pk, timeout=30)
    assert run.status == "completed"
    assert run.remote_id == early.id
    assert retrieves(simulator, run) == 1
    assert WebhookEvent.objects.get(object_id=early.id).outcome == "applied"
