"""Batched polling (``RUNS_POLL_MODE = "batched"``): one task claims every due run with one
statement, retrieves them concurrently, decides each with the per-run tick's code and writes the
batch back in bulk.

The unit tests run the real claim and the real writer against the test database; the broker is a
stand-in (``sent_tasks``). The integration test runs ``runs.poll_due`` in a real worker against
the simulator, sent through the real broker the way beat sends it.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from celery.signals import task_prerun
from django.db import close_old_connections
from django.utils import timezone

from runs import poll_modes
from runs.engine import batch_poll, bulk, writer
from runs.engine.decisions import Counters, Decision, Move
from runs.models import Run
from runs.services import create_run
from runs.tasks import start_run
from tests.clock import ago


@pytest.fixture
def batched(settings) -> None:
    settings.RUNS_POLL_MODE = "batched"


# --- the claim ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_claim_takes_due_active_runs_only_and_holds_them_for_the_lease(run_row):
    due = run_row("in_progress", remote_id="resp_due", next_poll_at=ago(3))
    run_row("in_progress", remote_id="resp_later", next_poll_at=ago(-60))
    run_row("completed", remote_id="resp_done", next_poll_at=ago(3))
    run_row("queued", remote_id="", next_poll_at=ago(3))  # not created remotely yet
    before = timezone.now()

    claimed = bulk.claim_due(limit=10, lease_s=30)

    assert [(c.run_id, c.ticket, c.due_at) for c in claimed] == [(due.pk, 1, due.next_poll_at)]
    due.refresh_from_db()
    # A fresh ticket (a poll task still waiting for this run exits), and due again only when
    # the lease ends, so a batch that dies does not strand it.
    assert due.poll_generation == 1
    assert due.next_poll_at >= before + timedelta(seconds=30)
    assert bulk.claim_due(limit=10, lease_s=30) == []


@pytest.mark.django_db
def test_the_claim_takes_the_most_overdue_first_and_at_most_the_batch(run_row):
    runs = [run_row("in_progress", remote_id=f"resp_{i}", next_poll_at=ago(i)) for i in range(5)]
    claimed = bulk.claim_due(limit=3, lease_s=30)
    assert [c.run_id for c in claimed] == [runs[4].pk, runs[3].pk, runs[2].pk]


@pytest.mark.django_db
def test_the_claim_may_reach_a_little_ahead_so_runs_are_not_an_interval_late(run_row):
    soon = run_row("in_progress", remote_id="resp_soon", next_poll_at=ago(-0.2))
    run_row("in_progress", remote_id="resp_later", next_poll_at=ago(-1))
    claimed = bulk.claim_due(limit=10, lease_s=30, ahead_s=0.25)
    assert [c.run_id for c in claimed] == [soon.pk]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("on_postgres")
def test_two_claimers_at_once_take_each_due_run_exactly_once(run_row, at_once):
    runs = [run_row("in_progress", remote_id=f"resp_{i}", next_poll_at=ago(1)) for i in range(400)]
    taken: list[list[int]] = [[], []]

    def claimer(slot: int) -> None:
        while batch := bulk.claim_due(limit=25, lease_s=30):
            taken[slot].extend(c.run_id for c in batch)

    at_once(claimer)

    assert sorted(taken[0] + taken[1]) == sorted(r.pk for r in runs)
    assert not set(taken[0]) & set(taken[1])
    assert taken[0] and taken[1], "both claimers got work: SKIP LOCKED, not one after the other"
    assert set(Run.objects.values_list("poll_generation", flat=True)) == {1}


@pytest.mark.django_db
def test_a_batch_lost_with_its_worker_is_due_again_when_the_lease_ends(run_row):
    run = run_row("in_progress", remote_id="resp_1", next_poll_at=ago(1))
    assert len(bulk.claim_due(limit=10, lease_s=30)) == 1  # ...and the worker dies here
    assert bulk.claim_due(limit=10, lease_s=30) == []
    later = timezone.now() + timedelta(seconds=31)
    again = bulk.claim_due(limit=10, lease_s=30, now=later)
    assert [(c.run_id, c.ticket) for c in again] == [(run.pk, 2)]


# --- writing a batch back -------------------------------------------------------------------------


def tick(run: Run, ticket: int, **fields: object) -> Decision:
    """A plain tick's decision: one retrieve, poll again in 2 s."""
    fields = {"counters": Counters(api_calls=1, polls=1), "poll_in_s": 2.0, "attempt": 3, **fields}
    return Decision(run.pk, "in_progress", ticket=ticket, **fields)


@pytest.mark.django_db
def test_plain_ticks_are_written_in_one_update_and_enqueue_nothing(
    batched, run_row, sent_tasks, django_assert_num_queries
):
    runs = [run_row("in_progress", remote_id=f"resp_{i}", error_retries=2) for i in range(20)]
    before = timezone.now()
    with django_assert_num_queries(1):
        assert writer.apply_all([tick(r, 0, errors="reset") for r in runs]) == [False] * 20
    for r in runs:
        r.refresh_from_db()
        assert (r.api_calls, r.polls, r.poll_attempt, r.error_retries) == (1, 1, 3, 0)
        assert r.next_poll_at >= before + timedelta(seconds=2)
    assert sent_tasks == []  # runs.poll_due finds them by their due time


@pytest.mark.django_db
def test_a_large_mixed_batch_writes_each_runs_own_values(batched, run_row, sent_tasks):
    """Many ticks (more than one statement holds on SQLite), each with its own counters, error
    rule and schedule position (none for some): every run gets exactly its own, held or not."""
    rules = ["keep", "reset", "count"]
    runs = [
        run_row("in_progress", remote_id=f"resp_{i}", error_retries=2, poll_attempt=1)
        for i in range(min(bulk.rearm_rows() + 7, 400))
    ]
    ended = run_row("completed", remote_id="resp_end", next_poll_at=None, poll_attempt=1)
    before = timezone.now()
    decisions = [
        tick(
            r,
            0,
            counters=Counters(api_calls=i % 3, polls=1),
            errors=rules[i % 3],
            attempt=None if i % 2 == 0 else 5,
            poll_in_s=float(i % 4 + 1),
        )
        for i, r in enumerate([*runs, ended])
    ]
    assert writer.apply_all(decisions) == [False] * len(decisions)
    for i, r in enumerate(runs):
        r.refresh_from_db()
        assert (r.api_calls, r.polls) == (i % 3, 1)
        assert r.error_retries == {"keep": 2, "reset": 0, "count": 3}[rules[i % 3]]
        assert r.poll_attempt == (1 if i % 2 == 0 else 5)
        assert r.next_poll_at >= before + timedelta(seconds=i % 4 + 1)
        assert r.next_poll_at < timezone.now() + timedelta(seconds=i % 4 + 1)
    ended.refresh_from_db()
    # Terminal stays terminal: no due time, no schedule position; its calls are still counted.
    assert (ended.next_poll_at, ended.poll_attempt, ended.polls) == (None, 1, 1)
    assert sent_tasks == []


@pytest.mark.django_db
def test_each_runs_next_poll_counts_from_its_own_answer_not_the_batchs_write(
    batched, run_row, sent_tasks
):
    """A batch is written once its slowest retrieve returns: a run that answered 3 s before that
    is due 2 s after its answer, whether its tick was plain or moved it."""
    answered = ago(3)
    plain = run_row("in_progress", remote_id="resp_1")
    moved = run_row("queued", remote_id="resp_2")
    writer.apply_all(
        [
            tick(plain, 0, decided_at=answered),
            tick(moved, 0, decided_at=answered, move=Move("in_progress", "poll", "queued")),
        ]
    )
    for run in (plain, moved):
        run.refresh_from_db()
        assert (run.status, run.next_poll_at) == ("in_progress", answered + timedelta(seconds=2))


def test_a_batchs_tick_is_stamped_when_its_run_answered(monkeypatch):
    monkeypatch.setattr(batch_poll.lifecycle, "decide_poll", lambda run: tick(run, 1))
    before = timezone.now()
    decision = batch_poll.decide_one(Run(pk=1, poll_generation=1))
    assert before <= decision.decided_at <= timezone.now()


@pytest.mark.django_db
def test_a_run_whose_ticket_moved_is_not_rearmed_but_its_call_is_counted(batched, run_row):
    woken_at = timezone.now()
    run = run_row("in_progress", remote_id="resp_1", poll_generation=5, next_poll_at=woken_at)
    # The batch held ticket 4; a webhook wake took ticket 5 meanwhile and asked for a poll now.
    writer.apply_all([tick(run, 4)])
    run.refresh_from_db()
    assert (run.next_poll_at, run.poll_attempt) == (woken_at, 0)
    assert (run.api_calls, run.polls) == (1, 1)


@pytest.mark.django_db
def test_a_batched_move_on_a_run_that_ended_meanwhile_is_refused_and_its_call_counted(
    batched, run_row, sent_tasks
):
    run = run_row("completed", remote_id="resp_1", next_poll_at=None)
    started = tick(run, 0, move=Move("in_progress", "poll", expected="queued"))
    assert writer.apply_all([started]) == [False]
    run.refresh_from_db()
    assert (run.status, run.next_poll_at, run.polls, run.api_calls) == ("completed", None, 1, 1)
    assert not run.events.exists()


@pytest.mark.django_db
def test_two_ticks_of_one_run_in_a_batch_are_both_written_and_both_counted(batched, run_row):
    run = run_row("queued", remote_id="resp_1")
    first = tick(run, 0, move=Move("in_progress", "poll", expected="queued"))
    second = tick(run, 0, move=Move("completed", "poll", expected="in_progress"), poll_in_s=None)
    assert writer.apply_all([first, second]) == [True, True]
    run.refresh_from_db()
    assert (run.status, run.polls, run.api_calls) == ("completed", 2, 2)
    assert [e.to_status for e in run.events.order_by("pk")] == ["in_progress", "completed"]


@pytest.mark.django_db
def test_a_batched_tick_that_read_a_run_waiting_for_tools_moves_it_on(batched, run_row, sent_tasks):
    """Assistants, after a submit whose answer was lost: the run reads requires_action here and
    in progress at OpenAI. The state machine allows that move for a writer that saw the wait."""
    run = run_row("requires_action", remote_id="run_1")
    went_on = tick(run, 0, move=Move("in_progress", "poll", expected="requires_action"))
    assert writer.apply_all([went_on]) == [True]
    run.refresh_from_db()
    assert run.status == "in_progress"
    assert run.events.get().from_status == "requires_action"


@pytest.mark.django_db
def test_terminal_stays_terminal(batched, run_row, sent_tasks):
    run = run_row("completed", remote_id="resp_1", next_poll_at=None)
    late = tick(run, 0)
    moved_back = tick(run, 0, move=Move("in_progress", "poll", expected="queued"))
    assert writer.apply_all([late, moved_back]) == [False, False]
    run.refresh_from_db()
    assert (run.status, run.next_poll_at) == ("completed", None)


@pytest.mark.django_db
def test_status_changes_in_a_batch_go_through_the_state_machine(batched, make_run, sent_tasks):
    run = make_run("in_progress", remote_id="resp_1")
    done = Decision(
        run.pk,
        "completed",
        ticket=run.poll_generation,
        move=Move("completed", "poll", expected="in_progress", fields={"output_text": "4"}),
        counters=Counters(api_calls=1, polls=1),
    )
    assert writer.apply_all([done]) == [True]
    run.refresh_from_db()
    assert (run.status, run.output_text, run.polls) == ("completed", "4", 1)
    assert run.events.last().to_status == "completed"


@pytest.mark.django_db(transaction=True)
def test_a_batchs_status_changes_are_written_per_kind_not_per_run(
    batched, run_row, sent_tasks, django_assert_max_num_queries
):
    """Many runs starting and ending in one batch: one lock, one UPDATE and one INSERT of events
    per kind of change, one re-arm for all; each run gets its own fields, event and signal."""
    from runs.signals import run_status_changed

    starting = [run_row("queued", remote_id=f"resp_s{i}") for i in range(10)]
    ending = [run_row("in_progress", remote_id=f"resp_e{i}") for i in range(10)]
    plain = [run_row("in_progress", remote_id=f"resp_p{i}") for i in range(5)]
    ended_at = ago(1)
    start = [
        tick(r, 0, move=Move("in_progress", "poll", "queued", {"remote_id": r.remote_id}))
        for r in starting
    ]
    end = [
        tick(
            r,
            0,
            poll_in_s=None,
            move=Move(
                "completed",
                "poll",
                "in_progress",
                {
                    "output_text": f"answer {i}",
                    "usage": {"input_tokens": i, "output_tokens": 2 * i},
                    "cost": Decimal(i) / 1000,
                    "remote_completed_at": ended_at,
                    "error_retries": 0,
                },
                {"remote_status": "completed"},
            ),
        )
        for i, r in enumerate(ending)
    ]
    seen = []
    receiver = lambda **kw: seen.append((kw["run_id"], kw["to_status"]))  # noqa: E731
    run_status_changed.connect(receiver)
    try:
        # The batch's rows locked in id order; per kind of change a savepoint, its lock, one
        # UPDATE, one INSERT of events, its release; one re-arm for all; BEGIN and COMMIT.
        with django_assert_max_num_queries(1 + 2 * 5 + 3):
            changed = writer.apply_all([*start, *end, *[tick(r, 0) for r in plain]])
    finally:
        run_status_changed.disconnect(receiver)
    assert changed == [True] * 20 + [False] * 5
    for r in starting:
        r.refresh_from_db()
        assert (r.status, r.polls, r.poll_attempt) == ("in_progress", 1, 3)
        assert r.started_at is not None and r.next_poll_at > timezone.now()
        assert [(e.from_status, e.to_status) for e in r.events.all()] == [("queued", "in_progress")]
    for i, r in enumerate(ending):
        r.refresh_from_db()
        assert (r.status, r.output_text, r.cost) == ("completed", f"answer {i}", Decimal(i) / 1000)
        assert r.usage == {"input_tokens": i, "output_tokens": 2 * i}
        assert (r.remote_completed_at, r.next_poll_at, r.polls) == (ended_at, None, 1)
        assert r.completed_at is not None
        assert r.events.get().detail == {"remote_status": "completed"}
    assert sorted(seen) == sorted(
        [(r.pk, "in_progress") for r in starting] + [(r.pk, "completed") for r in ending]
    )


@pytest.mark.django_db
def test_a_webhook_wake_still_wakes_its_one_run_at_once(batched, run_row, sent_tasks):
    run = run_row("in_progress", remote_id="resp_1", next_poll_at=ago(-60))
    assert writer.wake(run.pk, webhook_events=1)
    assert sent_tasks == [("runs.poll_run", (run.pk, 1), None)]
    # That poll's own re-arm stores the due time only: the next batch takes it from there.
    writer.apply(tick(run, 1))
    assert len(sent_tasks) == 1
    run.refresh_from_db()
    assert (run.webhook_events, run.polls, run.poll_attempt) == (1, 1, 3)


@pytest.mark.django_db
def test_a_woken_poll_in_flight_is_not_claimed_again_by_a_batch(batched, run_row, sent_tasks):
    run = run_row("in_progress", remote_id="resp_1", next_poll_at=ago(-60))
    assert writer.wake(run.pk)
    woken = Run.objects.get(pk=run.pk).next_poll_at

    # The wake's runs.poll_run claims its ticket: its retrieve is now in flight...
    polling = writer.claim_poll(run.pk, 1)
    assert polling is not None
    # ...reading the due time the wake set (due now: a tick, not a hop of a long wait)...
    assert polling.next_poll_at == woken
    # ...while the row is leased, as a batch's claim leases it: the next batch leaves it alone.
    assert bulk.claim_due(limit=10, lease_s=30) == []

    # The tick's re-arm writes the real due time, and the batches take the run from there.
    writer.apply(tick(polling, polling.poll_generation))
    polling.refresh_from_db()
    assert polling.next_poll_at <= timezone.now() + timedelta(seconds=2)
    assert sent_tasks == [("runs.poll_run", (run.pk, 1), None)]  # the wake's, nothing more


@pytest.mark.django_db
def test_a_batch_that_takes_a_woken_run_first_makes_the_wakes_poll_exit(batched, run_row):
    run = run_row("in_progress", remote_id="resp_1", next_poll_at=ago(-60))
    assert writer.wake(run.pk)
    # Due now, so a batch may claim it before the wake's poll runs: one retrieve either way.
    assert [c.run_id for c in bulk.claim_due(limit=10, lease_s=30)] == [run.pk]
    assert writer.claim_poll(run.pk, 1) is None


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("on_postgres")
def test_woken_polls_and_a_batch_racing_take_each_run_exactly_once(batched, run_row, sent_tasks):
    runs = [
        run_row("in_progress", remote_id=f"resp_{i}", next_poll_at=ago(-60)) for i in range(200)
    ]
    for run in runs:
        writer.wake(run.pk)  # each run: ticket 1, due now, a runs.poll_run(run, 1) queued
    barrier = threading.Barrier(2)
    polls_done = threading.Event()
    by_poll: list[int] = []
    by_batch: list[int] = []

    def woken_polls() -> None:
        try:
            barrier.wait(timeout=10)
            for run in runs:
                if writer.claim_poll(run.pk, 1) is not None:
                    by_poll.append(run.pk)
        finally:
            polls_done.set()
            close_old_connections()

    def batches() -> None:
        # Beat keeps ticking while the woken polls run: claim until they are done and none is due.
        try:
            barrier.wait(timeout=10)
            while len(by_poll) < 20 and not polls_done.is_set():
                time.sleep(0.001)  # some polls are in flight before the first beat tick
            while True:
                finished = polls_done.is_set()
                batch = bulk.claim_due(limit=10, lease_s=30)
                by_batch.extend(c.run_id for c in batch)
                if finished and not batch:
                    return
        finally:
            close_old_connections()

    threads = [threading.Thread(target=woken_polls), threading.Thread(target=batches)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(by_poll + by_batch) == sorted(r.pk for r in runs)
    assert not set(by_poll) & set(by_batch), "a run in flight was claimed twice"
    # Each run's ticket moved once per claim that took it: the poll's or the batch's, or both
    # where a batch claimed the run between the poll's claim and its lease (the poll then
    # exits without a call: counted in by_batch only).
    generations = dict(Run.objects.values_list("pk", "poll_generation"))
    assert all(generations[pk] == 2 for pk in by_poll)
    assert all(generations[pk] in (2, 3) for pk in by_batch)


@pytest.mark.django_db
def test_a_per_run_poll_claims_its_ticket_and_leaves_the_due_time(run_row):
    due = ago(1)
    run = run_row("in_progress", remote_id="resp_1", next_poll_at=due)
    polling = writer.claim_poll(run.pk, 0)
    assert (polling.poll_generation, polling.next_poll_at) == (1, due)
    assert Run.objects.get(pk=run.pk).next_poll_at == due


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("strategy", "safety_net_mode", "countdown"),
    [("poll", "batched", True), ("webhook", "batched", False), ("webhook", "per_run", True)],
    ids=["a polled run", "a webhook run (the default)", "a webhook run, per-run safety net"],
)
def test_by_default_only_runs_tracked_by_polling_get_a_countdown_per_rearm(
    run_row, sent_tasks, settings, strategy, safety_net_mode, countdown
):
    """A webhook run's polls are a safety net: by default its due time is stored for
    runs.poll_due, and no countdown task is published for it or held by a worker."""
    settings.RUNS_SAFETY_NET_MODE = safety_net_mode
    run = run_row("in_progress", remote_id="resp_1", strategy=strategy)

    assert writer.apply(tick(run, 0)) is False  # no status change
    run.refresh_from_db()

    assert sent_tasks == ([("runs.poll_run", (run.pk, 0), 2.0)] if countdown else [])
    assert run.next_poll_at > timezone.now()  # the due time is stored either way


@pytest.mark.django_db
def test_by_default_a_batch_takes_webhook_runs_and_the_polled_runs_handed_to_it(run_row):
    """A polled run has countdown tasks of its own until "auto" hands it to the batches
    (tests/test_poll_modes.py): a batch that took it before would retrieve it twice."""
    webhook = run_row("in_progress", remote_id="resp_w", strategy="webhook", next_poll_at=ago(3))
    run_row("in_progress", remote_id="resp_p", strategy="poll", next_poll_at=ago(3))
    handed = run_row(
        "in_progress", remote_id="resp_h", strategy="poll", next_poll_at=ago(3), poll_by_due=True
    )

    assert poll_modes.due_strategies() == ["poll", "webhook"]
    assert poll_modes.batched_strategies() == ["webhook"]
    claimed = bulk.claim_due(10, 30, strategies=poll_modes.batched_strategies())

    assert sorted(c.run_id for c in claimed) == sorted([webhook.pk, handed.pk])
    assert bulk.claim_due(10, 30, strategies=[]) == []


@pytest.mark.django_db
def test_with_polled_runs_batched_and_per_run_safety_nets_a_batch_takes_only_polled_runs(
    run_row, settings
):
    settings.RUNS_POLL_MODE, settings.RUNS_SAFETY_NET_MODE = "batched", "per_run"
    run_row("in_progress", remote_id="resp_w", strategy="webhook", next_poll_at=ago(3))
    polled = run_row("in_progress", remote_id="resp_p", strategy="poll", next_poll_at=ago(3))

    assert poll_modes.due_strategies() == ["poll"]
    claimed = bulk.claim_due(10, 30, strategies=poll_modes.due_strategies())
    assert [c.run_id for c in claimed] == [polled.pk]


@pytest.mark.django_db
def test_with_no_run_polled_by_due_time_a_batch_takes_nothing(run_row, settings):
    settings.RUNS_POLL_MODE = settings.RUNS_SAFETY_NET_MODE = "per_run"
    run_row("in_progress", remote_id="resp_w", strategy="webhook", next_poll_at=ago(3))

    assert poll_modes.due_strategies() == []
    assert batch_poll.poll_due() == {"claimed": 0}


@pytest.mark.django_db
def test_a_woken_webhook_runs_poll_leases_its_due_time_so_no_batch_takes_it_meanwhile(run_row):
    due = ago(0.1)  # a wake's "now"
    run = run_row("in_progress", remote_id="resp_1", strategy="webhook", next_poll_at=due)

    polling = writer.claim_poll(run.pk, 0)

    # The tick reads the due time the wake set (a tick, not a hop); the row holds the lease.
    assert (polling.poll_generation, polling.next_poll_at) == (1, due)
    assert Run.objects.get(pk=run.pk).next_poll_at > timezone.now() + timedelta(seconds=20)
    assert bulk.claim_due(10, 30, strategies=["webhook"]) == []


@pytest.mark.django_db
def test_a_woken_poll_that_a_batch_beat_to_its_lease_exits_without_a_call(run_row, monkeypatch):
    run = run_row("in_progress", remote_id="resp_1", strategy="webhook", next_poll_at=ago(1))
    from runs.engine import claims

    claim_ticket = claims.claim_ticket

    def batch_claims_in_between(run_id: int, ticket: int):
        claimed = claim_ticket(run_id, ticket)
        assert [c.run_id for c in bulk.claim_due(10, 30)] == [run.pk]  # a batch, just then
        return claimed

    monkeypatch.setattr(claims, "claim_ticket", batch_claims_in_between)

    assert writer.claim_poll(run.pk, 0) is None


@pytest.mark.django_db
def test_a_full_batch_sends_the_next_one_at_once(
    batched, settings, run_row, sent_tasks, monkeypatch
):
    monkeypatch.setattr(
        batch_poll, "decide_all", lambda runs: [tick(r, r.poll_generation) for r in runs]
    )
    for i in range(3):
        run_row("in_progress", remote_id=f"resp_{i}", next_poll_at=ago(1))
    assert batch_poll.poll_due(limit=2)["claimed"] == 2
    assert sent_tasks == [("runs.poll_due", (), None)]
    assert batch_poll.poll_due(limit=2)["claimed"] == 1
    assert len(sent_tasks) == 1  # not full: the next beat will do


# --- one run failing in a batch ------------------------------------------------------------------

LEAKED = "sk-proj-" + "A" * 24


def failing_for(bad: Run):
    """``lifecycle.decide_poll`` for a batch where ``bad``'s tick raises (a bug, a lost
    connection), with a credential in the message; every other run gets a plain tick."""

    def decide_poll(run: Run) -> Decision:
        if run.pk == bad.pk:
            raise RuntimeError(f"lost the connection to https://api.example/?key={LEAKED}")
        return tick(run, run.poll_generation)

    return decide_poll


@pytest.mark.django_db
@pytest.mark.parametrize("threads", [1, 4])
def test_one_run_whose_tick_raises_is_retried_alone_and_the_batch_goes_on(
    batched, settings, run_row, sent_tasks, monkeypatch, caplog, threads
):
    settings.RUNS_POLL_CONCURRENCY = threads
    runs = [run_row("in_progress", remote_id=f"resp_{i}", next_poll_at=ago(1)) for i in range(4)]
    bad = runs[2]
    monkeypatch.setattr(batch_poll.lifecycle, "decide_poll", failing_for(bad))
    settings.RUNS_POLL_LEASE_S = 30.0
    lease_end = timezone.now() + timedelta(seconds=30)

    outcome = batch_poll.poll_due(limit=10)

    assert outcome == {"claimed": 4, "in_progress": 3, "retry": 1}
    for run in runs:
        run.refresh_from_db()
        assert run.status == "in_progress"
        # Nobody waits out the lease: every run has its own due time again.
        assert run.next_poll_at < lease_end
    good = [r for r in runs if r.pk != bad.pk]
    assert [(r.api_calls, r.polls, r.error_retries) for r in good] == [(1, 1, 0)] * 3
    # The failing run gets the error policy's answer: again after its backoff, one error counted.
    assert (bad.api_calls, bad.error_retries) == (0, 1)
    assert f"run {bad.pk}" in caplog.text and "RuntimeError" in caplog.text
    assert LEAKED not in caplog.text
    assert sent_tasks == []


@pytest.mark.django_db
def test_a_run_that_fails_every_tick_ends_failed_alone_past_the_retries(
    batched, settings, run_row, sent_tasks, monkeypatch
):
    settings.RUNS_MAX_ERROR_RETRIES = 2
    bad = run_row("in_progress", remote_id="resp_bad", next_poll_at=ago(1), error_retries=2)
    good = run_row("in_progress", remote_id="resp_good", next_poll_at=ago(1))
    monkeypatch.setattr(batch_poll.lifecycle, "decide_poll", failing_for(bad))
    cancelled: list[int] = []
    monkeypatch.setattr(
        batch_poll.answers, "cancel_remote_quietly", lambda run, **kw: cancelled.append(run.pk)
    )

    assert batch_poll.poll_due(limit=10) == {"claimed": 2, "in_progress": 1, "failed": 1}

    bad.refresh_from_db()
    good.refresh_from_db()
    assert (bad.status, bad.last_error_code) == ("failed", "unexpected")
    assert "RuntimeError" in bad.last_error and LEAKED not in bad.last_error
    assert cancelled == [bad.pk]  # it may still run at OpenAI
    assert (good.status, good.polls) == ("in_progress", 1)


# --- through a real worker ------------------------------------------------------------------------


@pytest.mark.integration
def test_batched_polls_take_runs_to_their_end_through_a_real_worker(
    batched, quick_polls, worker, simulator
):
    outcomes = ["completed", "failed", "incomplete", "completed", "completed", "completed"]
    runs = [
        create_run(f"batch {i}", metadata={"sim_duration_s": "1.5", "sim_outcome": outcome})
        for i, outcome in enumerate(outcomes)
    ]
    tasks_run: list[str] = []
    ours = {run.pk for run in runs}

    def count(sender: object = None, args: tuple = (), **kwargs: object) -> None:
        # Only this test's runs: the session's worker may still tick an earlier test's run.
        if sender.name == "runs.poll_due" or (args and args[0] in ours):
            tasks_run.append(sender.name)

    task_prerun.connect(count, weak=False)
    for run in runs:
        start_run.delay(run.pk)
    # Play beat: send runs.poll_due through the broker every 0.2 s until every run has ended.
    give_up = time.monotonic() + 60
    while Run.objects.filter(pk__in=[r.pk for r in runs]).active().exists():
        assert time.monotonic() < give_up, "batched polling did not end every run in 60 s"
        batch_poll_task().delay()
        time.sleep(0.2)
    task_prerun.disconnect(count)

    # No run had a countdown task of its own: every tick came from a batch.
    assert "runs.poll_run" not in tasks_run
    assert tasks_run.count("runs.start_run") == len(runs)

    stats = simulator.stats()["objects"]
    for run, outcome in zip(runs, outcomes, strict=True):
        run.refresh_from_db()
        assert run.status == outcome
        # Every retrieve the server saw is one this run counted: nothing doubled, nothing lost.
        assert run.polls == stats[run.remote_id]["retrieve"] >= 1
        assert run.api_calls == run.polls + 2  # conversation + response create
        assert [e.to_status for e in run.events.all()][-1] == outcome


def batch_poll_task():
    from runs.tasks import poll_due

    return poll_due


def test_beat_ticks_poll_due_when_some_runs_are_polled_by_due_time(settings):
    from celery import Celery

    from runs import beat

    settings.RUNS_POLL_MODE = settings.RUNS_SAFETY_NET_MODE = "per_run"
    app = Celery("host", set_as_current=False)
    beat._add_entries(app)
    assert beat.POLL_DUE_ENTRY not in app.conf.beat_schedule
    settings.RUNS_POLL_MODE = "auto"  # the default: polled runs that fell behind
    beat._add_entries(app)
    assert beat.POLL_DUE_ENTRY in app.conf.beat_schedule
    app.conf.beat_schedule = {}
    settings.RUNS_POLL_MODE = "per_run"
    settings.RUNS_SAFETY_NET_MODE = "batched"  # the default: webhook runs' safety nets
    settings.RUNS_POLL_DUE_INTERVAL_S = 0.5
    beat._add_entries(app)
    entry = app.conf.beat_schedule[beat.POLL_DUE_ENTRY]
    assert (entry["task"], entry["schedule"]) == ("runs.poll_due", 0.5)
    # A tick waits in the queue a few seconds at least: beat's and the workers' clocks may differ
    # by more than one short interval, and then every tick would arrive already expired.
    assert entry["options"]["expires"] == batch_poll.MIN_EXPIRES_S == 5.0


def test_a_long_poll_due_interval_lets_a_tick_wait_two_intervals(settings):
    settings.RUNS_POLL_DUE_INTERVAL_S = 4.0
    assert batch_poll.beat_entry()["options"]["expires"] == 8.0
