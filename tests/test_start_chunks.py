"""Chunked starts: one ``start_run`` creates every run waiting to start, up to
``RUNS_START_CHUNK``, against the simulator over HTTP; the writes of the chunk go together.

Most tests call the engine in-process with the broker replaced (``sent_tasks``), to see what a
chunk writes and enqueues; the last ones send ``start_run`` through Redis to a real worker.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import httpx2
import openai
import pytest
from django.utils import timezone

from runs import budget, services
from runs.backends.responses import ResponsesBackend
from runs.client import get_client, get_create_client
from runs.engine import claims, lifecycle, start_writes, writer
from runs.engine.decisions import Counters
from runs.engine.start_waves import per_thread, waves
from runs.models import Message, Run, RunEvent
from runs.services import add_message, create_run, create_thread
from runs.states import transition
from runs.status import RunStatus
from runs.tasks import start_run

QUICK = {"sim_duration_s": "30", "sim_outcome": "completed"}


@pytest.fixture
def sim(simulator, settings) -> Iterator[object]:
    """The engine's clients pointed at the simulator, with no worker: the test drives the start."""
    settings.OPENAI_BASE_URL = simulator.base_url
    get_client.cache_clear()
    get_create_client.cache_clear()
    simulator.reset()
    yield simulator
    get_client.cache_clear()
    get_create_client.cache_clear()


def pending_runs(n: int) -> list[Run]:
    return [create_run(f"run {i}", metadata=QUICK) for i in range(n)]


def cancelled_once_created(monkeypatch, target: Run) -> None:
    """A user cancels ``target`` just after OpenAI created it, before its chunk saved it."""
    real_create = ResponsesBackend.create

    def create(self, run, *args, **kwargs):
        state = real_create(self, run, *args, **kwargs)
        if run.pk == target.pk:
            services.cancel_run(Run.objects.get(pk=run.pk), by="test")
        return state

    monkeypatch.setattr(ResponsesBackend, "create", create)


def creates(simulator) -> dict[str, int]:
    return simulator.stats(objects=False)["creates_by_run_id"]


@pytest.mark.django_db(transaction=True)
def test_one_start_creates_its_run_and_the_oldest_others_waiting_up_to_the_chunk(
    sim, settings, sent_tasks
):
    settings.RUNS_START_CHUNK = 3
    runs = pending_runs(5)

    result = lifecycle.start(runs[2].pk)

    assert result["started"] is True and result["chunk_started"] == 3
    chunk = [runs[0].pk, runs[1].pk, runs[2].pk]
    for run in Run.objects.filter(pk__in=chunk):
        assert run.status == RunStatus.QUEUED and run.remote_id and run.next_poll_at
        assert run.api_calls == 2  # its conversation and its response
        assert list(run.events.values_list("from_status", "to_status", "source")) == [
            ("pending", "queued", "create")
        ]
    assert sorted(args[0] for name, args, _ in sent_tasks if name == "runs.poll_run") == chunk
    waiting = Run.objects.filter(pk__in=[runs[3].pk, runs[4].pk])
    assert {(r.status, r.start_claimed_at) for r in waiting} == {("pending", None)}


@pytest.mark.django_db(transaction=True)
def test_a_chunk_publishes_first_polls_only_for_its_runs_tracked_by_polling(
    sim, settings, sent_tasks
):
    """A webhook run's safety net is a due time by default (RUNS_SAFETY_NET_MODE): in a chunk
    that mixes both strategies, only the polled runs get a countdown task."""
    settings.RUNS_START_CHUNK = 4
    polled = [create_run(f"polled {i}", metadata=QUICK) for i in range(2)]
    hooked = [create_run(f"hooked {i}", metadata=QUICK, strategy="webhook") for i in range(2)]

    assert lifecycle.start(polled[0].pk)["chunk_started"] == 4

    assert sorted(args[0] for name, args, _ in sent_tasks if name == "runs.poll_run") == sorted(
        r.pk for r in polled
    )
    started = Run.objects.filter(pk__in=[r.pk for r in polled + hooked])
    assert all(run.next_poll_at for run in started)  # every due time stored either way


@pytest.mark.django_db(transaction=True)
def test_every_run_is_created_once_though_each_ones_message_tries_to_start_it(
    sim, settings, sent_tasks
):
    settings.RUNS_START_CHUNK = 4
    runs = pending_runs(10)

    results = [lifecycle.start(run.pk) for run in runs]

    assert sum(r["started"] for r in results) < len(runs)  # some found their run taken
    assert results[-1] == {
        "run_id": runs[-1].pk,
        "started": False,
        "reason": "already claimed or not pending",
    }
    assert creates(sim) == {str(run.pk): 1 for run in runs}
    assert set(Run.objects.values_list("status", flat=True)) == {RunStatus.QUEUED}


@pytest.mark.django_db(transaction=True)
def test_runs_of_one_thread_share_its_conversation_and_its_messages_are_sent_once(
    sim, settings, sent_tasks
):
    settings.RUNS_START_CHUNK = 10
    thread = create_thread()
    add_message(thread, "first question")
    first = create_run(thread=thread, metadata=QUICK)
    second = create_run(thread=thread, metadata=QUICK)

    lifecycle.start(first.pk)

    first.refresh_from_db()
    second.refresh_from_db()
    thread.refresh_from_db()
    assert first.status == second.status == RunStatus.QUEUED
    assert thread.remote_id.startswith("conv_")
    calls = sim.stats(objects=False)["calls"]
    assert sum(n for name, n in calls.items() if "conversations" in name and "create" in name) == 1
    assert not Message.objects.filter(thread=thread, sent_at__isnull=True).exists()
    # One conversation for the thread, one create for the thread and one per run.
    assert first.api_calls + second.api_calls == 3


@pytest.mark.django_db(transaction=True)
def test_a_create_that_fails_is_retried_for_its_run_alone(sim, settings, sent_tasks, monkeypatch):
    settings.RUNS_START_CHUNK = 5
    runs = pending_runs(3)
    real_create = ResponsesBackend.create

    def create(self, run, *args, **kwargs):
        if run.pk == runs[1].pk:
            raise ConnectionError("the network dropped this one")
        return real_create(self, run, *args, **kwargs)

    monkeypatch.setattr(ResponsesBackend, "create", create)

    lifecycle.start(runs[0].pk)

    statuses = dict(Run.objects.values_list("pk", "status"))
    assert statuses == {runs[0].pk: "queued", runs[1].pk: "pending", runs[2].pk: "queued"}
    retried = Run.objects.get(pk=runs[1].pk)
    assert retried.start_claimed_at is None and retried.error_retries == 1
    assert ("runs.start_run", (runs[1].pk,)) in [(name, args) for name, args, _ in sent_tasks]


@pytest.mark.django_db(transaction=True)
def test_a_run_cancelled_while_its_chunk_creates_it_is_cancelled_remotely(
    sim, settings, sent_tasks, monkeypatch
):
    settings.RUNS_START_CHUNK = 5
    runs = pending_runs(3)
    cancelled_once_created(monkeypatch, runs[1])

    lifecycle.start(runs[0].pk)

    cancelled = Run.objects.get(pk=runs[1].pk)
    assert cancelled.status == RunStatus.CANCELLED
    assert cancelled.remote_id  # kept, and cancelled at OpenAI too
    assert sim.stats()["objects"][cancelled.remote_id]["cancel"] == 1
    others = Run.objects.filter(pk__in=[runs[0].pk, runs[2].pk])
    assert set(others.values_list("status", flat=True)) == {RunStatus.QUEUED}


@pytest.mark.django_db(transaction=True)
def test_a_cancel_that_read_the_run_pending_just_before_its_start_saved_it_asks_openai(
    sent_tasks, monkeypatch
):
    """The cancel reads "pending" and decides "cancelled at once"; a start saves the run as
    created before the cancel writes. Ending the run then would leave its response running (and
    billed): the cancel reads again and goes the remote way."""
    run = create_run("hi")
    real_move = writer.move

    def start_saves_first(run_id, change):
        if change.to_status == RunStatus.CANCELLED:
            transition(run_id, RunStatus.QUEUED, source="create", fields={"remote_id": "resp_1"})
        return real_move(run_id, change)

    monkeypatch.setattr(writer, "move", start_saves_first)

    assert services.cancel_run(Run.objects.get(pk=run.pk), by="test") == RunStatus.CANCELLING
    assert Run.objects.get(pk=run.pk).status == RunStatus.CANCELLING
    assert ("runs.cancel_run", (run.pk,)) in [(name, args) for name, args, _ in sent_tasks]


@pytest.mark.parametrize("chunk", [1, 3])
@pytest.mark.django_db(transaction=True)
def test_a_create_whose_run_another_start_created_meanwhile_is_cancelled_not_kept(
    sim, settings, sent_tasks, monkeypatch, chunk
):
    """A start whose claim timed out (a stalled worker) while another start created the run: the
    later answer must not take the run over, and its response must not be left running."""
    settings.RUNS_START_CHUNK = chunk
    run = pending_runs(1)[0]
    real_create = ResponsesBackend.create
    made: list[str] = []

    def create(self, r, *args, **kwargs):
        state = real_create(self, r, *args, **kwargs)
        made.append(state.remote_id)
        transition(r.pk, RunStatus.QUEUED, source="create", fields={"remote_id": "resp_other"})
        # "in progress" may follow "queued": only the move's being made from pending refuses it.
        return dataclasses.replace(state, status=RunStatus.IN_PROGRESS)

    monkeypatch.setattr(ResponsesBackend, "create", create)

    lifecycle.start(run.pk)

    kept = Run.objects.get(pk=run.pk)
    assert (kept.status, kept.remote_id) == (RunStatus.QUEUED, "resp_other")
    assert sim.stats()["objects"][made[0]]["cancel"] == 1
    assert kept.api_calls >= 1  # this create's calls are counted all the same


@pytest.mark.django_db(transaction=True)
def test_a_create_that_fails_for_good_after_another_start_created_the_run_leaves_it_be(
    sim, settings, sent_tasks, monkeypatch
):
    settings.RUNS_START_CHUNK = 1
    run = pending_runs(1)[0]

    def create(self, r, *args, **kwargs):
        transition(r.pk, RunStatus.QUEUED, source="create", fields={"remote_id": "resp_other"})
        raise openai.BadRequestError(
            "no",
            response=httpx2.Response(400, request=httpx2.Request("POST", "http://x")),
            body=None,
        )

    monkeypatch.setattr(ResponsesBackend, "create", create)

    lifecycle.start(run.pk)

    kept = Run.objects.get(pk=run.pk)
    assert (kept.status, kept.remote_id) == (RunStatus.QUEUED, "resp_other")


@pytest.mark.django_db(transaction=True)
def test_a_broker_that_fails_the_first_polls_does_not_cost_the_chunks_other_saves(
    sim, settings, sent_tasks, monkeypatch
):
    """The bulk step committed; its first polls' flush failed. The runs of the wave still to be
    saved one by one (here, one cancelled meanwhile) are saved, or they would be created again
    once their claims time out. The started runs' polls are the sweep's (overdue)."""
    settings.RUNS_START_CHUNK = 5
    settings.RUNS_POLL_MODE, settings.RUNS_SAFETY_NET_MODE = "per_run", "per_run"
    runs = pending_runs(3)
    cancelled_once_created(monkeypatch, runs[1])

    def broker_down(tasks):
        raise ConnectionError("the broker went away")

    monkeypatch.setattr(start_writes, "enqueue_all", broker_down)

    lifecycle.start(runs[0].pk)

    cancelled = Run.objects.get(pk=runs[1].pk)
    assert cancelled.status == RunStatus.CANCELLED
    assert sim.stats()["objects"][cancelled.remote_id]["cancel"] == 1
    others = Run.objects.filter(pk__in=[runs[0].pk, runs[2].pk])
    assert set(others.values_list("status", flat=True)) == {RunStatus.QUEUED}


@pytest.mark.django_db(transaction=True)
def test_with_chunks_off_a_start_takes_only_its_own_run(sim, settings, sent_tasks):
    settings.RUNS_START_CHUNK = 1
    runs = pending_runs(2)

    result = lifecycle.start(runs[1].pk)

    assert result["started"] is True and "chunk_started" not in result
    assert Run.objects.get(pk=runs[0].pk).status == RunStatus.PENDING


@pytest.mark.django_db(transaction=True)
def test_each_wave_renews_its_claims_so_a_run_cancelled_before_its_wave_is_not_created(
    sim, settings, sent_tasks, monkeypatch
):
    settings.RUNS_START_CHUNK, settings.RUNS_START_CONCURRENCY = 6, 2  # three waves
    runs = pending_runs(6)
    real_create = ResponsesBackend.create

    def create(self, run, *args, **kwargs):
        if run.pk == runs[0].pk:
            services.cancel_run(Run.objects.get(pk=runs[5].pk), by="test")
        return real_create(self, run, *args, **kwargs)

    monkeypatch.setattr(ResponsesBackend, "create", create)

    result = lifecycle.start(runs[0].pk)

    assert result["chunk_started"] == 5
    assert str(runs[5].pk) not in creates(sim)
    assert Run.objects.get(pk=runs[5].pk).status == RunStatus.CANCELLED
    assert set(creates(sim).values()) == {1}


@pytest.mark.django_db(transaction=True)
def test_a_wave_whose_write_fails_hands_the_later_waves_back_at_once(
    sim, settings, sent_tasks, monkeypatch
):
    settings.RUNS_START_CHUNK, settings.RUNS_START_CONCURRENCY = 4, 2
    runs = pending_runs(4)

    def broken(items):
        raise ConnectionError("the database went away")

    monkeypatch.setattr(start_writes, "started_many", broken)

    with pytest.raises(ConnectionError):
        lifecycle.start(runs[0].pk)

    claimed = dict(Run.objects.values_list("pk", "start_claimed_at"))
    # The first wave was created but not saved: its claims wait for the sweep, as alone.
    assert claimed[runs[0].pk] and claimed[runs[1].pk]
    # The second was never created: free at once for its own start_run, or the sweep.
    assert claimed[runs[2].pk] is None and claimed[runs[3].pk] is None
    assert str(runs[2].pk) not in creates(sim)


def test_a_thread_gives_a_wave_at_most_the_runs_its_claims_outlast_the_rest_in_later_waves():
    """A wave's claims are renewed only before it, and one thread's runs are created one after
    another: with claims of 120 s and creates of up to 30 s, two runs of a thread (after its
    conversation) are as many as a wave can hold and still be saved in time."""
    mine = [Run(pk=pk, thread_id=1) for pk in (1, 2, 3, 4, 5)]
    others = [Run(pk=pk, thread_id=pk) for pk in (6, 7)]

    planned = waves(mine + others, size=8, per_thread=2)

    assert [[r.pk for r in wave] for wave in planned] == [[1, 2], [3, 4], [5, 6, 7]]


def test_how_many_runs_of_a_thread_a_wave_holds_follows_the_claim_and_create_timeouts(settings):
    assert per_thread() == 2  # claims of 120 s, creates of up to 30 s
    settings.RUNS_CLAIM_TIMEOUT_S = 600.0
    assert per_thread() == 18
    settings.RUNS_CLAIM_TIMEOUT_S = 45.0
    assert per_thread() == 1  # never none: a claim that short is too short for one start too


@pytest.mark.django_db(transaction=True)
def test_a_threads_many_runs_start_in_order_over_waves_with_one_conversation(
    sim, settings, sent_tasks, monkeypatch
):
    settings.RUNS_START_CHUNK = 10
    thread = create_thread()
    add_message(thread, "first question")
    runs = [create_run(thread=thread, metadata=QUICK) for _ in range(5)]
    order: list[int] = []
    renewed: list[list[int]] = []
    real_create, real_renew = ResponsesBackend.create, writer.renew_starts

    def create(self, run, *args, **kwargs):
        order.append(run.pk)
        return real_create(self, run, *args, **kwargs)

    def renew(run_ids, held):
        renewed.append(sorted(run_ids))
        return real_renew(run_ids, held)

    monkeypatch.setattr(ResponsesBackend, "create", create)
    monkeypatch.setattr(writer, "renew_starts", renew)

    assert lifecycle.start(runs[0].pk)["chunk_started"] == 5

    ids = [r.pk for r in runs]
    assert order == ids
    # Before each wave, every claim still planned: the last run waits through both waves
    # before its own, and its claim must not age past RUNS_CLAIM_TIMEOUT_S meanwhile.
    assert renewed == [ids[2:], ids[4:]]
    calls = sim.stats(objects=False)["calls"]
    assert sum(n for name, n in calls.items() if "conversations" in name and "create" in name) == 1
    assert set(Run.objects.filter(thread=thread).values_list("status", flat=True)) == {"queued"}
    assert not Message.objects.filter(thread=thread, sent_at__isnull=True).exists()


@pytest.mark.django_db(transaction=True)
def test_a_conversation_that_failed_fails_its_threads_later_runs_without_another_try(
    sim, settings, sent_tasks, monkeypatch
):
    settings.RUNS_START_CHUNK = 10
    thread = create_thread()
    runs = [create_run("hello", thread=thread, metadata=QUICK) for _ in range(4)]
    tries: list[int] = []

    def create_thread_remotely(self, run):
        tries.append(run.pk)
        raise ConnectionError("the network dropped the conversation")

    monkeypatch.setattr(ResponsesBackend, "create_thread", create_thread_remotely)

    lifecycle.start(runs[0].pk)

    assert tries == [runs[0].pk]  # the thread's later waves did not try again
    for run in Run.objects.filter(thread=thread):
        assert (run.status, run.error_retries, run.start_claimed_at) == ("pending", 1, None)
    assert creates(sim) == {}


@pytest.mark.django_db(transaction=True)
def test_over_budget_a_chunk_defers_its_own_run_and_hands_the_others_back(
    sim, settings, sent_tasks, monkeypatch
):
    settings.RUNS_START_CHUNK = 5
    runs = pending_runs(3)
    queued: list[bool] = []
    monkeypatch.setattr(budget, "take", lambda kind, queue=True: queued.append(queue) or 2.0)

    result = lifecycle.start(runs[1].pk)

    assert result["started"] is False and result["deferred_s"] == 2.0
    # The first run only tried (it is handed back, with no slot held for it); the own run queued.
    assert queued == [False, True]
    assert [args for name, args, _ in sent_tasks if name == "runs.start_run"] == [(runs[1].pk,)]
    for other in Run.objects.filter(pk__in=[runs[0].pk, runs[2].pk]):
        # No second message for them (theirs may still be queued): simply free again.
        assert (other.start_claimed_at, other.next_poll_at) == (None, None)
    assert creates(sim) == {}


@pytest.mark.django_db(transaction=True)
def test_a_claim_taken_by_hand_written_sql_is_released_by_its_stamp(run_row, sent_tasks):
    """The sweep releases a stale claim by an equality on its stamp: the raw claim must store
    the moment as the ORM does (on SQLite, naive UTC text), or the release would never match."""
    run = run_row()
    claims.claim_start(run.pk, timezone.now())
    held = Run.objects.get(pk=run.pk).start_claimed_at

    assert writer.release_start_claim(run.pk, held) is True
    assert Run.objects.get(pk=run.pk).start_claimed_at is None


@pytest.mark.django_db(transaction=True)
def test_a_ticks_rearm_counts_and_moves_the_due_time_only_with_the_ticket_it_holds(run_row):
    run = run_row("in_progress", remote_id="resp_1", poll_generation=3, api_calls=4)
    due = timezone.now() + timezone.timedelta(seconds=5)
    counted = Counters(api_calls=1, polls=1)

    assert not claims.rearm(run.pk, 2, due, 1, counters=counted, errors="count")
    assert claims.rearm(run.pk, 3, due, 1, counters=counted, errors="count", remote_id="resp_2")

    run.refresh_from_db()
    assert (run.next_poll_at, run.poll_attempt, run.api_calls, run.polls) == (due, 1, 5, 1)
    assert (run.error_retries, run.remote_id) == (1, "resp_2")


@pytest.mark.django_db(transaction=True)
def test_runs_with_a_later_start_attempt_are_not_taken(run_row, settings):
    later = timezone.now() + timezone.timedelta(minutes=5)
    own = run_row()
    deferred = run_row(next_poll_at=later)
    free = run_row()

    taken = claims.claim_starts(own.pk, 10, timezone.now())

    assert sorted(r.pk for r in taken) == [own.pk, free.pk]
    assert Run.objects.get(pk=deferred.pk).start_claimed_at is None


@pytest.mark.usefixtures("on_postgres")
@pytest.mark.django_db(transaction=True)
def test_two_starters_at_once_take_each_run_exactly_once(run_row, at_once):
    runs = [run_row() for _ in range(200)]
    taken: list[list[int]] = [[], []]

    def starter(slot: int) -> None:
        for run in runs[slot::2]:
            taken[slot].extend(r.pk for r in claims.claim_starts(run.pk, 10, timezone.now()))

    at_once(starter)

    assert sorted(taken[0] + taken[1]) == sorted(r.pk for r in runs)
    assert not set(taken[0]) & set(taken[1])


@pytest.mark.integration
def test_runs_started_together_through_a_worker_each_end_created_once(
    worker, simulator, wait_terminal, settings
):
    settings.RUNS_START_CHUNK = 8
    runs = [
        create_run(f"together {i}", metadata={"sim_duration_s": "1", "sim_outcome": "completed"})
        for i in range(30)
    ]
    results = [start_run.delay(run.pk) for run in runs]

    ended = [wait_terminal(run.pk, timeout=60) for run in runs]

    assert {r.status for r in ended} == {RunStatus.COMPLETED}
    made = simulator.stats(objects=False)["creates_by_run_id"]
    assert [made.get(str(run.pk)) for run in runs] == [1] * len(runs)
    chunks = [r.get(timeout=30) for r in results]
    assert sum(c.get("chunk_started", int(c["started"])) for c in chunks) == len(runs)
    starts = RunEvent.objects.filter(run__in=runs, from_status="pending", source="create")
    assert starts.count() == len(runs)
