"""The recovery sweep: overdue polls re-armed, lost starts restarted, stale claims released."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from runs.engine import enqueue, lifecycle
from runs.engine import sweep as sweep_module
from runs.engine.sweep import sweep
from runs.models import Run, RunEvent
from runs.services import create_run
from tests.clock import ago

pytestmark = pytest.mark.django_db

# The unit tests run the real writer (wakes take real tickets); only the broker is a stand-in
# (``sent_tasks``), so each test sees exactly what the sweep enqueued.


def row(run: Run) -> dict:
    return Run.objects.filter(pk=run.pk).values().get()


def test_an_overdue_poll_is_rearmed_and_an_on_time_one_is_left_alone(run_row, sent_tasks, settings):
    settings.RUNS_SWEEP_GRACE_S = 10
    late = run_row("in_progress", remote_id="resp_late", next_poll_at=ago(60))
    on_time = run_row("in_progress", remote_id="resp_on_time", next_poll_at=ago(2))
    finished = run_row("completed", remote_id="resp_done", next_poll_at=None)
    untouched = [row(on_time), row(finished)]
    swept_at = timezone.now()
    report = sweep()
    assert report.rearmed == 1
    # The late run was woken: a fresh ticket, due now, and one poll holding it.
    assert sent_tasks == [("runs.poll_run", (late.pk, 1), None)]
    late.refresh_from_db()
    assert late.poll_generation == 1 and late.next_poll_at >= swept_at
    # The others were not: no task for them, and their rows are as they were.
    assert [row(on_time), row(finished)] == untouched


def test_a_pending_run_whose_start_was_lost_is_started(run_row, sent_tasks, settings):
    settings.RUNS_SWEEP_GRACE_S = 10
    lost = run_row("pending")
    Run.objects.filter(pk=lost.pk).update(created_at=ago(60))
    run_row("pending")  # just created: its start_run is probably on its way
    retrying = run_row("pending", next_poll_at=timezone.now() + timedelta(seconds=30))
    Run.objects.filter(pk=retrying.pk).update(created_at=ago(60))
    assert sweep().restarted == 1
    assert sent_tasks == [("runs.start_run", (lost.pk,), None)]


def test_a_start_still_queued_is_resent_once_per_grace_not_every_sweep(
    run_row, sent_tasks, settings
):
    """Behind a backlog of starts, the re-sent message may itself wait in the queue: the next
    sweep leaves the run alone until the re-send is a grace late too."""
    settings.RUNS_SWEEP_GRACE_S = 10
    waiting = run_row("pending")
    Run.objects.filter(pk=waiting.pk).update(created_at=ago(60))

    assert sweep().restarted == 1
    assert sweep().restarted == 0  # the next sweep, seconds later
    Run.objects.filter(pk=waiting.pk).update(next_poll_at=ago(11))
    assert sweep().restarted == 1
    assert [name for name, *_ in sent_tasks] == ["runs.start_run", "runs.start_run"]


def test_a_stale_start_claim_is_released_once(run_row, sent_tasks, settings):
    settings.RUNS_CLAIM_TIMEOUT_S = 120
    stale = run_row("pending", start_claimed_at=ago(600))
    run_row("pending", start_claimed_at=ago(5))  # a create may still be under way
    Run.objects.update(created_at=timezone.now())
    assert sweep().reclaimed == 1
    assert sent_tasks == [("runs.start_run", (stale.pk,), None)]
    assert sweep().reclaimed == 0
    assert len(sent_tasks) == 1


def test_a_pending_run_past_its_deadline_expires(run_row, sent_tasks):
    run = run_row("pending", deadline_at=ago(1))
    assert sweep().expired == 1
    run.refresh_from_db()
    assert run.status == "expired"
    assert run.events.get().source == "sweep"
    assert sent_tasks == []  # nothing was created at OpenAI, so nothing to cancel or start


def test_a_step_that_fails_leaves_the_other_steps_to_run(run_row, sent_tasks, monkeypatch, caplog):
    """The broker refuses the wakes of overdue runs, and one pending run cannot be expired:
    both are logged and counted, and every other path of recovery still runs this pass."""
    from runs.engine import expiry, writer

    run_row("in_progress", remote_id="resp_late", next_poll_at=ago(600))
    poison = run_row("pending", deadline_at=ago(2))
    expires = run_row("pending", deadline_at=ago(1))

    def refused(run_id: int) -> bool:
        raise ConnectionError("broker down")

    real_expire = expiry.expire

    def expire(run: Run):
        if run.pk == poison.pk:
            raise ValueError("a row no step can read")
        return real_expire(run)

    monkeypatch.setattr(writer, "wake", refused)
    monkeypatch.setattr(expiry, "expire", expire)
    report = sweep()

    assert (report.failures, report.rearmed, report.expired) == (2, 0, 1)
    assert Run.objects.get(pk=expires.pk).status == "expired"
    assert "sweep: wake_overdue failed" in caplog.text
    assert f"run {poison.pk}: could not be expired" in caplog.text


def test_a_pending_run_a_start_saves_as_the_sweep_expires_it_stays_created(
    run_row, sent_tasks, monkeypatch
):
    """The sweep read the run pending (nothing at OpenAI to cancel); a start saved it as created
    before the expiry was written. Expiring it then would leave its response running: it stays
    created, and its deadline is its polls' to apply."""
    from runs.engine import expiry
    from runs.states import transition

    run = run_row("pending", deadline_at=ago(1))
    real_expire = expiry.expire

    def start_saves_first(read, **kwargs):
        decision = real_expire(read, **kwargs)
        transition(read.pk, "queued", source="create", fields={"remote_id": "resp_1"})
        return decision

    monkeypatch.setattr(expiry, "expire", start_saves_first)

    assert sweep().expired == 0
    run.refresh_from_db()
    assert (run.status, run.remote_id) == ("queued", "resp_1")


def test_a_cancel_still_not_done_is_sent_again_once_per_claim_timeout(
    run_row, sent_tasks, settings
):
    """The cancel's message may never have been published (a broker down at the request) or been
    lost with its worker: a run left ``cancelling`` gets its cancel again, about once per
    ``RUNS_CLAIM_TIMEOUT_S`` (once or twice: a late sweep must not skip it), not at every sweep."""
    settings.RUNS_CLAIM_TIMEOUT_S, settings.RUNS_SWEEP_INTERVAL_S = 120, 5
    stuck = run_row("cancelling", remote_id="resp_stuck", next_poll_at=None)
    recent = run_row("cancelling", remote_id="resp_recent", next_poll_at=None)
    now = timezone.now()
    for run, began in (
        (stuck, now - timedelta(seconds=121)),
        (recent, now - timedelta(seconds=30)),
    ):
        event = RunEvent.objects.create(
            run=run, from_status="in_progress", to_status="cancelling", source="user"
        )
        RunEvent.objects.filter(pk=event.pk).update(at=began)
    per_period: dict[tuple[int, int], int] = {}
    for k in range(48):  # a sweep every 5 s for 4 minutes
        at = now + timedelta(seconds=5 * k)
        sent_tasks.clear()
        sweep(now=at)
        for run, began in ((stuck, 121), (recent, 30)):
            if ("runs.cancel_run", (run.pk,), None) in sent_tasks:
                key = (run.pk, (began + 5 * k) // 120)
                per_period[key] = per_period.get(key, 0) + 1
    # The stuck run: at once, then in each later period; the recent one from its first timeout.
    assert sorted(per_period) == [(stuck.pk, 1), (stuck.pk, 2), (recent.pk, 1), (recent.pk, 2)]
    assert set(per_period.values()) <= {1, 2}


def test_after_a_mass_cancel_every_run_gets_its_cancel_again_in_turns(
    run_row, sent_tasks, settings
):
    """Five runs cancelled at once, their cancels lost, and a sweep that takes two a pass: each
    period starts where the last one stopped, so all five are sent again within three periods,
    not the same oldest two every time."""
    settings.RUNS_CLAIM_TIMEOUT_S, settings.RUNS_SWEEP_INTERVAL_S = 120, 5
    now = timezone.now()
    runs = [run_row("cancelling", remote_id=f"resp_{i}", next_poll_at=None) for i in range(5)]
    for i, run in enumerate(runs):
        event = RunEvent.objects.create(
            run=run, from_status="in_progress", to_status="cancelling", source="user"
        )
        RunEvent.objects.filter(pk=event.pk).update(at=now - timedelta(seconds=120 - i * 0.01))
    resent: set[int] = set()
    for period in range(3):
        sent_tasks.clear()
        sweep(now=now + timedelta(seconds=1 + 120 * period), batch=2)
        assert len(sent_tasks) == 2
        resent |= {args[0] for name, args, _ in sent_tasks if name == "runs.cancel_run"}
    assert resent == {run.pk for run in runs}


def test_batches_bound_the_work_of_one_sweep(run_row, sent_tasks, settings):
    settings.RUNS_SWEEP_GRACE_S = 1
    overdue = [
        run_row("in_progress", remote_id=f"resp_{i}", next_poll_at=ago(60 + i)) for i in range(7)
    ]
    assert sweep(batch=5).rearmed == 5
    # The five most overdue, each woken once.
    assert sorted(sent_tasks) == sorted(("runs.poll_run", (r.pk, 1), None) for r in overdue[2:])


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
