"""``RUNS_POLL_MODE = "auto"``: a run is polled by countdown tasks of its own while its polls run
on time; a poll that ran more than ``RUNS_POLL_AUTO_LATE_S`` late (the workers are behind) hands
the run to ``runs.poll_due``'s batches for the rest of its life (``Run.poll_by_due``).

The unit tests conclude real ticks through the real writer and claim against the test database,
with a stand-in broker (``sent_tasks``); the integration tests run a real worker against the
simulator, with the batches sent through the real broker as beat sends them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from celery.signals import task_prerun
from django.utils import timezone
from prometheus_client import REGISTRY

from runs import poll_modes
from runs.engine import answers, batch_poll, bulk, lifecycle, start_writes, writer
from runs.engine.decisions import Counters, Decision, Move
from runs.models import Run
from runs.services import create_run
from runs.status import EventSource
from runs.tasks import start_run
from tests.clock import ago


@pytest.fixture
def auto(settings) -> None:
    settings.RUNS_POLL_MODE = "auto"
    settings.RUNS_POLL_AUTO_LATE_S = 0.5


def tick(run: Run) -> Decision:
    """A plain tick's decision for ``run`` as claimed: one retrieve, poll again in 2 s."""
    return Decision(
        run.pk,
        "in_progress",
        ticket=run.poll_generation,
        poll_in_s=2.0,
        attempt=run.poll_attempt + 1,
        counters=Counters(api_calls=1, polls=1),
    )


@pytest.fixture
def ticks(monkeypatch) -> Callable[[Run], str]:
    """``ticks(run)``: the per-run tick's exit for ``run`` as claimed (``decide_poll``, which
    judges how late it ran, then ``answers.conclude``), with the retrieve's own decision
    replaced by a plain "still in progress" (``tick``): no API here."""
    monkeypatch.setattr(lifecycle, "_decide", lambda run, now: tick(run))
    return lambda run: answers.conclude(run, lifecycle.decide_poll(run))


@pytest.fixture
def batches_take(monkeypatch) -> Callable[[], list[int]]:
    """``batches_take()``: the runs ``runs.poll_due`` claims now, through its own claim, with
    their ticks left out (no API here)."""
    taken: list[int] = []

    def read(claimed: list[bulk.Claimed]) -> list[Run]:
        taken.extend(c.run_id for c in claimed)
        return []

    monkeypatch.setattr(batch_poll, "_read", read)

    def take() -> list[int]:
        taken.clear()
        batch_poll.poll_due()
        return list(taken)

    return take


def handed_over(after: str) -> float:
    """The metric operators watch: runs "auto" handed to the batches, by what ran late."""
    return REGISTRY.get_sample_value("runs_handed_to_batches_total", {"after": after}) or 0.0


# --- the decision ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "late_s", "handed", "by_due"),
    [
        ("per_run", 30.0, False, False),  # countdowns whatever happens
        ("per_run", 0.0, True, False),  # switched back from auto: countdowns again
        ("batched", 0.0, False, True),  # the batches whatever happens
        ("auto", 0.1, False, False),  # on time: its countdown
        ("auto", 0.6, False, True),  # late: handed to the batches
        ("auto", 0.0, True, True),  # handed over once, for good
        ("auto", -5.0, False, False),  # a hop, early by design
    ],
)
def test_which_poll_finds_a_run_next(settings, mode, late_s, handed, by_due):
    settings.RUNS_POLL_MODE, settings.RUNS_POLL_AUTO_LATE_S = mode, 0.5
    now = timezone.now()
    due = now - timedelta(seconds=late_s)
    run = Run(strategy="poll", next_poll_at=due, poll_by_due=handed)
    assert poll_modes.next_by_due(run, now) is by_due


@pytest.mark.parametrize(
    ("poll_mode", "net_mode", "due"),
    [
        ("per_run", "per_run", []),  # nothing to batch: beat sends no runs.poll_due
        ("per_run", "batched", ["webhook"]),
        ("auto", "per_run", ["poll"]),
        ("batched", "auto", ["poll", "webhook"]),
        ("sometimes", "per_run", []),  # unknown: E302 says so; its runs keep their countdowns
    ],
)
def test_the_batches_are_sent_for_the_strategies_whose_mode_needs_them(
    settings, poll_mode, net_mode, due
):
    settings.RUNS_POLL_MODE, settings.RUNS_SAFETY_NET_MODE = poll_mode, net_mode
    assert poll_modes.due_strategies() == due
    assert [m for m in poll_modes.MODES if poll_modes.needs_batches(m)] == ["batched", "auto"]


def test_in_auto_a_start_claimed_behind_a_backlog_leaves_the_first_poll_to_the_batches(auto):
    now = timezone.now()

    def claimed(waited_s: float, retry_due: datetime | None = None) -> Run:
        created = now - timedelta(seconds=waited_s)
        return Run(
            strategy="poll", created_at=created, next_poll_at=retry_due, start_claimed_at=now
        )

    assert poll_modes.first_by_due(claimed(0.1)) is False
    assert poll_modes.first_by_due(claimed(3.0)) is True
    # A retried start is judged from its retry's due time, not from the run's creation.
    assert poll_modes.first_by_due(claimed(60.0, retry_due=now)) is False
    # beat sends runs.poll_due for the batches, and they take only the runs handed to them
    assert poll_modes.due_strategies() == ["poll", "webhook"]
    assert poll_modes.batched_strategies() == ["webhook"]


# --- the writer and the claim ---------------------------------------------------------------------


@pytest.mark.django_db
def test_an_on_time_poll_keeps_its_countdown_and_no_batch_takes_the_run(
    auto, settings, run_row, sent_tasks, ticks, batches_take
):
    settings.RUNS_POLL_AUTO_LATE_S = 5.0  # nothing this test does is that late
    run = run_row("in_progress", remote_id="resp_1", strategy="poll", next_poll_at=ago(0))

    ticks(run)

    run.refresh_from_db()
    assert sent_tasks == [("runs.poll_run", (run.pk, 0), 2.0)]
    assert (run.poll_by_due, run.polls) == (False, 1)
    Run.objects.filter(pk=run.pk).update(next_poll_at=ago(1))  # its countdown is due...
    assert batches_take() == []  # ...and no batch retrieves it a second time


@pytest.mark.django_db
def test_a_late_poll_hands_its_run_to_the_batches(auto, run_row, sent_tasks, ticks, batches_take):
    run = run_row("in_progress", remote_id="resp_1", strategy="poll", next_poll_at=ago(2))
    counted = handed_over("poll")

    ticks(run)

    run.refresh_from_db()
    assert sent_tasks == []  # no countdown: runs.poll_due finds it by its due time
    assert run.poll_by_due is True
    assert handed_over("poll") == counted + 1
    assert run.next_poll_at > timezone.now()
    Run.objects.filter(pk=run.pk).update(next_poll_at=ago(0))
    assert batches_take() == [run.pk]


@pytest.mark.django_db
def test_a_run_handed_over_stays_with_the_batches_though_they_are_on_time(
    auto, run_row, sent_tasks, ticks
):
    run = run_row(
        "in_progress", remote_id="resp_1", strategy="poll", next_poll_at=ago(0), poll_by_due=True
    )
    [claimed] = bulk.claim_due(10, 30, strategies=[])
    run.poll_generation, run.next_poll_at = claimed.ticket, claimed.due_at
    counted = handed_over("poll")

    ticks(run)  # the batch's tick, on time

    run.refresh_from_db()
    assert sent_tasks == []
    assert run.poll_by_due is True
    assert handed_over("poll") == counted  # handed over before, not again


@pytest.mark.django_db
def test_a_late_tick_whose_ticket_moved_hands_nothing_over(auto, run_row, sent_tasks, ticks):
    run = run_row("in_progress", remote_id="resp_1", strategy="poll", next_poll_at=ago(2))
    Run.objects.filter(pk=run.pk).update(poll_generation=1)  # a webhook woke it meanwhile
    counted = handed_over("poll")

    ticks(run)

    run.refresh_from_db()
    assert (run.poll_by_due, sent_tasks) == (False, [])
    assert handed_over("poll") == counted


@pytest.mark.django_db
def test_a_decision_that_says_nothing_of_lateness_keeps_the_run_where_it_is(
    auto, run_row, sent_tasks
):
    """A tool round's resume: a countdown for a run with countdowns, none for one handed over."""
    kept = run_row("requires_action", remote_id="resp_1", strategy="poll", next_poll_at=ago(9))
    handed = run_row(
        "requires_action",
        remote_id="resp_2",
        strategy="poll",
        next_poll_at=ago(9),
        poll_by_due=True,
    )

    for run in (kept, handed):
        answers.conclude(run, tick(run))

    assert sent_tasks == [("runs.poll_run", (kept.pk, 0), 2.0)]
    assert [
        r.poll_by_due for r in Run.objects.filter(pk__in=[kept.pk, handed.pk]).order_by("pk")
    ] == [
        False,
        True,
    ]


@pytest.mark.django_db
def test_a_wake_of_a_handed_over_run_leases_it_so_no_batch_retrieves_it_too(
    auto, run_row, sent_tasks, batches_take
):
    run = run_row(
        "in_progress", remote_id="resp_1", strategy="poll", next_poll_at=ago(-60), poll_by_due=True
    )
    assert writer.wake(run.pk)
    [(_, (_, ticket), _)] = sent_tasks

    assert writer.claim_poll(run.pk, ticket) is not None  # the wake's poll, retrieving now...
    assert batches_take() == []  # ...holds the due time against the batches


@pytest.mark.django_db
def test_once_the_mode_is_per_run_a_batch_gives_a_handed_over_run_its_countdown_back(
    settings, run_row, sent_tasks, monkeypatch, batches_take
):
    """Webhook runs' safety nets keep runs.poll_due scheduled, and it still takes the runs
    handed over before the switch (no countdown waits for them); its tick gives each one back."""
    settings.RUNS_POLL_MODE = "per_run"
    run = run_row(
        "in_progress", remote_id="resp_1", strategy="poll", next_poll_at=ago(3), poll_by_due=True
    )
    assert batches_take() == [run.pk]
    run.refresh_from_db()  # as the batch holds it: the claim's ticket
    monkeypatch.setattr(lifecycle, "_decide", lambda r, now: tick(r))

    writer.apply_all([lifecycle.decide_poll(run)])

    run.refresh_from_db()
    assert sent_tasks == [("runs.poll_run", (run.pk, run.poll_generation), 2.0)]
    assert run.poll_by_due is False


@pytest.mark.django_db
def test_a_start_whose_first_poll_goes_to_the_batches_sends_no_countdown(run_row, sent_tasks):
    run = run_row("pending", strategy="poll")
    change = Move("queued", EventSource.CREATE, "pending", {"remote_id": "resp_1"})

    assert start_writes.started(run.pk, change, 0, 1.0, Counters(api_calls=1), by_due=True)

    run.refresh_from_db()
    assert (run.status, run.poll_by_due, sent_tasks) == ("queued", True, [])


# --- through a real worker ------------------------------------------------------------------------


@pytest.fixture
def tasks_seen():
    """``tasks_seen(run)``: the names of the tasks the worker runs for ``run`` from now on."""
    handlers = []

    def watch(run: Run) -> list[str]:
        seen: list[str] = []

        def count(sender: object = None, args: tuple = (), **kwargs: object) -> None:
            if args and args[0] == run.pk:
                seen.append(sender.name)

        task_prerun.connect(count, weak=False)
        handlers.append(count)
        return seen

    yield watch
    for handler in handlers:
        task_prerun.disconnect(handler)


@pytest.mark.integration
def test_in_auto_a_run_whose_polls_run_late_ends_through_the_batches(
    auto, settings, quick_polls, worker, simulator, beat_sending_poll_due, wait_terminal, tasks_seen
):
    settings.RUNS_POLL_AUTO_LATE_S = -60.0  # every poll counts as late
    run = create_run("late", metadata={"sim_duration_s": "2", "sim_outcome": "completed"})
    seen = tasks_seen(run)

    with beat_sending_poll_due(every_s=0.2):
        start_run.delay(run.pk)
        run = wait_terminal(run.pk, timeout=60)

    # The start was "late" too, so no countdown at all: the batches made every poll.
    assert seen.count("runs.poll_run") == 0
    assert seen.count("runs.start_run") == 1
    assert run.status == "completed"
    assert run.poll_by_due is True
    assert run.polls == simulator.stats()["objects"][run.remote_id]["retrieve"] >= 2


@pytest.mark.integration
def test_in_auto_a_run_whose_polls_run_on_time_keeps_its_countdowns(
    auto, settings, quick_polls, worker, simulator, beat_sending_poll_due, wait_terminal, tasks_seen
):
    settings.RUNS_POLL_AUTO_LATE_S = 60.0  # no poll is ever late
    run = create_run("on time", metadata={"sim_duration_s": "2", "sim_outcome": "completed"})
    seen = tasks_seen(run)

    with beat_sending_poll_due(every_s=0.2):  # the batches run, and leave this run alone
        start_run.delay(run.pk)
        run = wait_terminal(run.pk, timeout=60)

    assert run.status == "completed"
    assert run.poll_by_due is False
    # Every retrieve the server saw was one of this run's own countdown polls.
    assert run.polls == seen.count("runs.poll_run") >= 2
    assert run.polls == simulator.stats()["objects"][run.remote_id]["retrieve"]
