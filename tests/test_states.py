"""The state machine: every (from, to) pair, sticky terminals, and racing writers."""

import threading

import pytest
from django.db import close_old_connections

from runs.models import Run, RunEvent
from runs.signals import run_status_changed
from runs.states import can_transition, transition
from runs.status import TERMINAL, RunStatus

S = RunStatus
ACTIVE_NOT_PENDING = {S.QUEUED, S.IN_PROGRESS, S.REQUIRES_ACTION, S.CANCELLING}

# The table, written out independently of the implementation: (from, to) pairs that are allowed.
ALLOWED = (
    {(S.PENDING, t) for t in set(S) - {S.PENDING, S.CANCELLING}}
    | {(S.QUEUED, t) for t in {S.IN_PROGRESS, S.REQUIRES_ACTION, S.CANCELLING} | TERMINAL}
    | {(S.IN_PROGRESS, t) for t in {S.REQUIRES_ACTION, S.CANCELLING} | TERMINAL}
    | {(S.REQUIRES_ACTION, t) for t in {S.QUEUED, S.IN_PROGRESS, S.CANCELLING} | TERMINAL}
    | {(S.CANCELLING, t) for t in TERMINAL}
)
PAIRS = [(a, b) for a in S for b in S]


@pytest.mark.parametrize(("from_status", "to_status"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
@pytest.mark.django_db
def test_every_pair(from_status, to_status, run_row, django_capture_on_commit_callbacks):
    run = run_row(from_status)
    expected = (from_status, to_status) in ALLOWED
    assert can_transition(from_status, to_status) is expected
    # Out of requires_action the run goes on by a tool round's submit only (the test below).
    resumed = from_status == S.REQUIRES_ACTION and to_status in (S.QUEUED, S.IN_PROGRESS)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert transition(run.pk, to_status, source="tool" if resumed else "poll") is expected
    run.refresh_from_db()
    assert run.status == (to_status if expected else from_status)
    assert RunEvent.objects.filter(run=run).count() == (1 if expected else 0)
    assert len(callbacks) == (1 if expected else 0)


@pytest.mark.django_db
def test_terminal_is_sticky(run_row):
    run = run_row(S.IN_PROGRESS)
    assert transition(run.pk, S.COMPLETED, source="poll")
    for status in S:
        assert not transition(run.pk, status, source="webhook")
    run.refresh_from_db()
    assert run.status == S.COMPLETED
    assert run.completed_at is not None
    assert list(run.events.values_list("from_status", "to_status")) == [
        (S.IN_PROGRESS, S.COMPLETED)
    ]


@pytest.mark.django_db
def test_a_stale_poll_never_moves_a_run_backwards(run_row):
    run = run_row(S.IN_PROGRESS)
    assert not transition(run.pk, S.QUEUED, source="poll")
    run.refresh_from_db()
    assert run.status == S.IN_PROGRESS


@pytest.mark.parametrize("source", ["poll", "webhook", "sweep", "user"])
@pytest.mark.django_db
def test_a_stale_answer_never_takes_a_run_out_of_requires_action(run_row, source):
    """A poll that read the run queued, and "in progress" at OpenAI, writes after a webhook's
    wake moved it to requires_action: taking its answer would undo the tool round."""
    run = run_row(S.REQUIRES_ACTION)
    for to_status in (S.QUEUED, S.IN_PROGRESS):
        assert not can_transition(S.REQUIRES_ACTION, to_status, source, decided_from=S.QUEUED)
    assert not transition(run.pk, S.IN_PROGRESS, source=source, expected=S.QUEUED)
    run.refresh_from_db()
    assert run.status == S.REQUIRES_ACTION


@pytest.mark.parametrize("to_status", [S.QUEUED, S.IN_PROGRESS])
@pytest.mark.django_db
def test_a_run_goes_on_from_requires_action_by_a_submit_or_a_writer_that_saw_it_waiting(
    run_row, to_status
):
    """The submit's own move; or a poll that read requires_action and found the remote run going
    on (Assistants, after a submit whose answer was lost)."""
    submitted, seen = run_row(S.REQUIRES_ACTION), run_row(S.REQUIRES_ACTION)
    assert transition(submitted.pk, to_status, source="tool")
    assert transition(seen.pk, to_status, source="poll", expected=S.REQUIRES_ACTION)
    assert {r.status for r in Run.objects.filter(pk__in=[submitted.pk, seen.pk])} == {to_status}


@pytest.mark.django_db
def test_a_strict_move_is_made_only_from_the_status_it_was_decided_on(run_row):
    """A cancel decided on a run not yet created at OpenAI: a start saved it as created first."""
    started = run_row(S.QUEUED, remote_id="resp_1")
    assert not transition(started.pk, S.CANCELLED, source="user", expected=S.PENDING, strict=True)
    started.refresh_from_db()
    assert started.status == S.QUEUED
    assert not RunEvent.objects.filter(run=started).exists()

    waiting = run_row(S.PENDING)
    assert transition(waiting.pk, S.CANCELLED, source="user", expected=S.PENDING, strict=True)


@pytest.mark.django_db
def test_fields_travel_with_the_change_and_timestamps_are_stamped(run_row):
    run = run_row(S.QUEUED)
    assert transition(run.pk, S.IN_PROGRESS, source="poll")
    assert transition(
        run.pk, S.FAILED, source="poll", fields={"last_error": "boom", "last_error_code": "x"}
    )
    run.refresh_from_db()
    assert run.started_at and run.completed_at
    assert (run.last_error, run.last_error_code) == ("boom", "x")


@pytest.mark.django_db
def test_a_run_back_in_progress_keeps_the_moment_it_first_started(run_row):
    run = run_row(S.QUEUED)
    assert transition(run.pk, S.IN_PROGRESS, source="poll")
    run.refresh_from_db()
    first = run.started_at
    assert first is not None
    assert transition(run.pk, S.REQUIRES_ACTION, source="poll")
    assert transition(run.pk, S.IN_PROGRESS, source="tool")
    run.refresh_from_db()
    assert run.started_at == first


@pytest.mark.django_db
def test_a_run_that_skipped_in_progress_is_stamped_when_it_gets_there(run_row):
    run = run_row(S.QUEUED)
    assert transition(run.pk, S.REQUIRES_ACTION, source="poll")
    run.refresh_from_db()
    assert run.started_at is None
    assert transition(run.pk, S.IN_PROGRESS, source="tool")
    run.refresh_from_db()
    assert run.started_at is not None


@pytest.mark.django_db
def test_signal_is_sent_on_commit_with_the_change(run_row, django_capture_on_commit_callbacks):
    seen = []

    def receiver(sender, **kw):
        seen.append((kw["run_id"], kw["from_status"], kw["to_status"], kw["source"]))

    run = run_row(S.PENDING)
    run_status_changed.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            transition(run.pk, S.QUEUED, source="create")
        assert seen == []  # nothing before the commit
        for callback in callbacks:
            callback()
    finally:
        run_status_changed.disconnect(receiver)
    assert seen == [(run.pk, S.PENDING, S.QUEUED, "create")]


@pytest.mark.django_db
def test_unknown_status_is_an_error(run_row):
    run = run_row()
    with pytest.raises(ValueError, match="unknown run status"):
        transition(run.pk, "done", source="poll")


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("on_postgres")
@pytest.mark.parametrize("attempt", range(5))
def test_two_racing_writers_exactly_one_wins(attempt, run_row):
    """A poll and a webhook report different ends at the same instant: one wins, one event."""
    run = run_row(S.IN_PROGRESS)
    barrier = threading.Barrier(2)
    results: dict[str, bool] = {}

    def write(to_status: str) -> None:
        try:
            barrier.wait()
            results[to_status] = transition(run.pk, to_status, source="poll")
        finally:
            close_old_connections()

    threads = [threading.Thread(target=write, args=(s,)) for s in (S.COMPLETED, S.FAILED)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results.values()) == [False, True]
    run.refresh_from_db()
    winner = next(s for s, won in results.items() if won)
    assert run.status == winner
    assert list(run.events.values_list("to_status", flat=True)) == [winner]
