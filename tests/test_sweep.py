"""The recovery sweep: overdue polls re-armed, lost starts restarted, stale claims released."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from runs.engine import enqueue, lifecycle, writer
from runs.engine import sweep as sweep_module
from runs.engine.sweep import sweep
from runs.models import Run, Thread
from runs.services import create_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def enqueued(monkeypatch):
    """Record what the sweep would enqueue instead of sending it (the unit tests' broker)."""
    wake = mock.create_autospec(writer.wake, return_value=True)
    sent = mock.Mock()
    monkeypatch.setattr(writer, "wake", wake)
    monkeypatch.setattr(enqueue, "send", sent)
    start = mock.Mock()
    sent.side_effect = lambda name, *args, **kw: start(*args) if name == enqueue.START_RUN else None
    return mock.Mock(wake=wake, start=start)


def make(status="in_progress", **fields) -> Run:
    thread = Thread.objects.create()
    fields.setdefault("remote_id", "resp_x" if status != "pending" else "")
    fields.setdefault("deadline_at", timezone.now() + timedelta(hours=1))
    return Run.objects.create(thread=thread, model="m", status=status, **fields)


def ago(seconds: float):
    return timezone.now() - timedelta(seconds=seconds)


def test_an_overdue_poll_is_rearmed_and_an_on_time_one_is_left_alone(enqueued, settings):
    settings.RUNS_SWEEP_GRACE_S = 10
    late = make(next_poll_at=ago(60))
    on_time = make(next_poll_at=ago(2))
    finished = make(status="completed", next_poll_at=None)
    report = sweep()
    assert report.rearmed == 1
    enqueued.wake.assert_called_once_with(late.pk)
    assert on_time.pk and finished.pk


def test_a_pending_run_whose_start_was_lost_is_started(enqueued, settings):
    settings.RUNS_SWEEP_GRACE_S = 10
    lost = make(status="pending")
    Run.objects.filter(pk=lost.pk).update(created_at=ago(60))
    make(status="pending")  # just created: its start_run is probably on its way
    retrying = make(status="pending", next_poll_at=timezone.now() + timedelta(seconds=30))
    Run.objects.filter(pk=retrying.pk).update(created_at=ago(60))
    assert sweep().restarted == 1
    enqueued.start.assert_called_once_with(lost.pk)


def test_a_stale_start_claim_is_released_once(enqueued, settings):
    settings.RUNS_CLAIM_TIMEOUT_S = 120
    stale = make(status="pending", start_claimed_at=ago(600))
    make(status="pending", start_claimed_at=ago(5))  # a create may still be under way
    Run.objects.update(created_at=timezone.now())
    assert sweep().reclaimed == 1
    enqueued.start.assert_called_once_with(stale.pk)
    assert sweep().reclaimed == 0


def test_a_pending_run_past_its_deadline_expires(enqueued):
    run = make(status="pending", deadline_at=ago(1))
    assert sweep().expired == 1
    run.refresh_from_db()
    assert run.status == "expired"
    assert run.events.get().source == "sweep"


def test_batches_bound_the_work_of_one_sweep(enqueued, settings):
    settings.RUNS_SWEEP_GRACE_S = 1
    for _ in range(7):
        make(next_poll_at=ago(60))
    assert sweep(batch=5).rearmed == 5


@pytest.mark.integration
def test_a_run_whose_countdown_was_lost_is_recovered(worker, simulator, wait_terminal, settings):
    """The countdown poll vanishes (a Redis flush, a SIGKILL): the sweep brings the run home."""
    settings.RUNS_SWEEP_GRACE_S = 0.5
    run = create_run("lost poll", metadata={"sim_duration_s": "0.5", "sim_outcome": "completed"})
    with mock.patch.object(enqueue, "send"):  # every countdown is lost
        lifecycle.start(run.pk)
    run.refresh_from_db()
    assert run.status == "queued"
    assert run.next_poll_at is not None  # saved with the remote id: the sweep can see it
    Run.objects.filter(pk=run.pk).update(next_poll_at=ago(5))  # ...once it is overdue
    assert sweep_module.sweep().rearmed == 1
    run = wait_terminal(run.pk, timeout=20)
    assert run.status == "completed"
