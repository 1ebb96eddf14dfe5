"""Chunked starts: one ``start_run`` creates every run waiting to start, up to
``RUNS_START_CHUNK``, against the simulator over HTTP; the writes of the chunk go together.

Most tests call the engine in-process with the broker replaced (``sent_tasks``), to see what a
chunk writes and enqueues; the last ones send ``start_run`` through Redis to a real worker.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from django.db import close_old_connections
from django.utils import timezone

from runs import services
from runs.backends.responses import ResponsesBackend
from runs.client import get_client, get_create_client
from runs.engine import claims, lifecycle
from runs.models import Message, Run, RunEvent
from runs.services import add_message, create_run, create_thread
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
def test_every_run_is_created_once_whichever_message_reaches_it_first(sim, settings, sent_tasks):
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
    real_create = ResponsesBackend.create

    def create(self, run, *args, **kwargs):
        state = real_create(self, run, *args, **kwargs)
        if run.pk == runs[1].pk:
            services.cancel_run(Run.objects.get(pk=run.pk), by="test")
        return state

    monkeypatch.setattr(ResponsesBackend, "create", create)

    lifecycle.start(runs[0].pk)

    cancelled = Run.objects.get(pk=runs[1].pk)
    assert cancelled.status == RunStatus.CANCELLED
    assert cancelled.remote_id  # kept, and cancelled at OpenAI too
    assert sim.stats()["objects"][cancelled.remote_id]["cancel"] == 1
    others = Run.objects.filter(pk__in=[runs[0].pk, runs[2].pk])
    assert set(others.values_list("status", flat=True)) == {RunStatus.QUEUED}


@pytest.mark.django_db(transaction=True)
def test_a_chunk_of_one_starts_only_its_own_run(sim, settings, sent_tasks):
    settings.RUNS_START_CHUNK = 1
    runs = pending_runs(2)

    result = lifecycle.start(runs[1].pk)

    assert result["started"] is True and "chunk_started" not in result
    assert Run.objects.get(pk=runs[0].pk).status == RunStatus.PENDING


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
def test_two_starters_at_once_take_each_run_exactly_once(run_row):
    runs = [run_row() for _ in range(200)]
    barrier = threading.Barrier(2)
    taken: list[list[int]] = [[], []]

    def starter(slot: int) -> None:
        try:
            barrier.wait(timeout=10)
            for run in runs[slot::2]:
                taken[slot].extend(r.pk for r in claims.claim_starts(run.pk, 10, timezone.now()))
        finally:
            close_old_connections()

    threads = [threading.Thread(target=starter, args=(slot,)) for slot in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

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
