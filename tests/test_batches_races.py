"""Batches when ticks overlap, run late or fail at the end: what a slow poll, a cancel during a
poll, a deadline, a slow submit, a failing download and an early webhook may and may not do.

Each race is driven in-process and deterministically: the stubbed Batch API call of one tick
runs the other tick (a wake and a poll, a cancel, the sweep and a second submit) before it
answers, which is exactly the interleaving two workers could produce. The database is the real
one; the broker is a stand-in (``sent_tasks``).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import httpx2
import openai
import pytest
from django.utils import timezone

from runs import services
from runs.backends import batch_api
from runs.backends.batch_api import RemoteBatch
from runs.engine import batch_lifecycle, batch_runs, batch_writer, events
from runs.engine.sweep import sweep
from runs.models import Batch, Run, RunEvent, WebhookEvent

from .test_batches import batch_of, claimable, jsonl, output_line, prompts

pytestmark = pytest.mark.django_db

COUNTS = {"total": 3, "completed": 3, "failed": 0}


def ended_remotely(status: str = "completed", **files: str) -> RemoteBatch:
    return RemoteBatch("batch_1", status, request_counts=COUNTS, **files)


def serve_files(monkeypatch, files: dict[str, bytes]) -> list[str]:
    """``batch_api.download`` answers from ``files``; the ids downloaded, in order."""
    downloaded: list[str] = []

    @contextmanager
    def download(file_id: str) -> Iterator[io.BytesIO]:
        downloaded.append(file_id)
        yield io.BytesIO(files[file_id])

    monkeypatch.setattr(batch_api, "download", download)
    return downloaded


def statuses(ids: list[int]) -> set[str]:
    return set(Run.objects.filter(pk__in=ids).values_list("status", flat=True))


def connection_refused(*args: object) -> None:
    request = httpx2.Request("GET", "http://sim/v1/files/file_out/content")
    raise openai.APIConnectionError(request=request) from httpx2.ConnectError("refused")


# --- a slow poll and a woken one ------------------------------------------------------------------


def test_a_slow_poll_never_reopens_a_batch_a_woken_poll_has_finished(sent_tasks, monkeypatch):
    """Poll A retrieves ``in_progress``; before it re-arms, ``batch.completed`` wakes the batch
    and poll B downloads, settles and finishes it. A's re-arm has lost its ticket: it must not
    write its stale ``in_progress`` over the ended batch (nor re-arm it)."""
    batch, ids = batch_of(3)
    claimable(batch)
    serve_files(monkeypatch, {"file_out": jsonl(*(output_line(i) for i in ids))})
    answers = []

    def retrieve(remote_id: str) -> RemoteBatch:
        answers.append(remote_id)
        if len(answers) == 1:  # poll A is waiting for this answer: B runs to the end meanwhile
            assert batch_writer.wake(batch.pk, webhook_events=1)
            woken = Batch.objects.get(pk=batch.pk).poll_generation
            assert batch_lifecycle.poll(batch.pk, woken) == "completed"
            return ended_remotely("in_progress")
        return ended_remotely(output_file_id="file_out")

    monkeypatch.setattr(batch_api, "retrieve", retrieve)
    assert batch_lifecycle.poll(batch.pk, 0) == "in_progress"

    batch.refresh_from_db()
    assert (batch.status, batch.next_poll_at) == ("completed", None)
    assert batch.results_applied_at is not None
    assert statuses(ids) == {"completed"}
    # Its counters were final when it ended: the late tick's retrieve is not added after.
    assert (batch.polls, batch.api_calls) == (1, 2)
    assert not [task for task in sent_tasks if task[:2] == ("runs.poll_batch", (batch.pk, 1))]


# --- a cancel asked for while a poll waits for OpenAI ---------------------------------------------


def test_a_cancel_asked_for_during_a_poll_is_sent(
    sent_tasks, monkeypatch, django_capture_on_commit_callbacks
):
    """The user cancels while a poll waits for its retrieve: the poll's ``in_progress`` must not
    replace ``cancelling``, or the cancel task (which sends only for a ``cancelling`` batch)
    would skip it and the batch would run to its end at OpenAI."""
    batch, ids = batch_of(2)
    claimable(batch)

    def retrieve(remote_id: str) -> RemoteBatch:
        assert services.cancel_batch(Batch.objects.get(pk=batch.pk)) == "cancelling"
        return ended_remotely("in_progress")

    monkeypatch.setattr(batch_api, "retrieve", retrieve)
    with django_capture_on_commit_callbacks(execute=True):
        assert batch_lifecycle.poll(batch.pk, 0) == "in_progress"

    assert Batch.objects.get(pk=batch.pk).status == "cancelling"
    assert ("runs.cancel_batch", (batch.pk,), None) in sent_tasks
    asked: list[str] = []
    monkeypatch.setattr(batch_api, "cancel", asked.append)
    assert batch_lifecycle.send_cancel(batch.pk) == "cancel_sent"
    assert asked == ["batch_1"]


# --- the deadline ---------------------------------------------------------------------------------


def test_past_its_deadline_a_batch_that_ended_is_settled_not_expired(sent_tasks, monkeypatch):
    """Its ``batch.completed`` was lost and the last safety-net poll lands after the deadline:
    the batch completed at hour 22, so it is retrieved once more and settled from its file,
    with costs, instead of cancelled and expired."""
    batch, ids = batch_of(3)
    claimable(batch, deadline_at=timezone.now() - timedelta(seconds=1))
    monkeypatch.setattr(
        batch_api, "retrieve", lambda remote_id: ended_remotely(output_file_id="file_out")
    )
    serve_files(monkeypatch, {"file_out": jsonl(*(output_line(i) for i in ids))})
    asked: list[str] = []
    monkeypatch.setattr(batch_api, "cancel", asked.append)

    assert batch_lifecycle.poll(batch.pk, 0) == "completed"
    assert asked == []
    assert statuses(ids) == {"completed"}
    assert not Run.objects.filter(pk__in=ids, cost__isnull=True).exists()
    assert Batch.objects.get(pk=batch.pk).status == "completed"


def test_past_its_deadline_a_batch_that_did_not_end_is_given_up_after_one_look(
    sent_tasks, monkeypatch
):
    batch, ids = batch_of(2)
    claimable(batch, deadline_at=timezone.now() - timedelta(seconds=1))
    looked: list[str] = []
    monkeypatch.setattr(
        batch_api, "retrieve", lambda remote_id: looked.append(remote_id) or ended_remotely("x")
    )
    asked: list[str] = []
    monkeypatch.setattr(batch_api, "cancel", asked.append)

    assert batch_lifecycle.poll(batch.pk, 0) == "expired"
    assert (looked, asked) == (["batch_1"], ["batch_1"])
    assert Batch.objects.get(pk=batch.pk).api_calls == 2  # the look and the cancel


def test_past_its_deadline_a_look_that_fails_is_retried_before_the_batch_is_given_up_on(
    sent_tasks, monkeypatch, settings
):
    """One 500 or dropped connection at the last look must not throw away a batch that may have
    ended: the error policy retries it on its countdown (a read's 4x ``RUNS_MAX_ERROR_RETRIES``);
    with the retries spent, the batch is given up on as one OpenAI did not report ended."""
    settings.RUNS_MAX_ERROR_RETRIES = 1
    batch, ids = batch_of(1)
    claimable(batch, deadline_at=timezone.now() - timedelta(seconds=1))
    monkeypatch.setattr(batch_api, "retrieve", connection_refused)
    asked: list[str] = []
    monkeypatch.setattr(batch_api, "cancel", asked.append)

    for _ in range(4):
        ticket = Batch.objects.get(pk=batch.pk).poll_generation
        assert batch_lifecycle.poll(claimable(batch).pk, ticket) == "retry"
    assert statuses(ids) == {"queued"} and asked == []
    ticket = Batch.objects.get(pk=batch.pk).poll_generation
    assert batch_lifecycle.poll(claimable(batch).pk, ticket) == "expired"
    assert statuses(ids) == {"expired"} and asked == ["batch_1"]


@pytest.mark.parametrize("remote_status", ["finalizing", "cancelling"])
def test_past_its_deadline_a_batch_writing_its_files_gets_one_more_grace(
    sent_tasks, monkeypatch, settings, remote_status
):
    """OpenAI is writing the files of what it ran (``finalizing``, or ``cancelling`` with the
    lines that finished): cancelling it now would throw them away. It is polled on, never past
    the deadline plus ``RUNS_BATCH_GRACE_S``, and given up on only after that."""
    settings.RUNS_BATCH_GRACE_S = 600.0
    batch, ids = batch_of(2)
    claimable(batch, deadline_at=timezone.now() - timedelta(seconds=1))
    monkeypatch.setattr(batch_api, "retrieve", lambda remote_id: ended_remotely(remote_status))
    asked: list[str] = []
    monkeypatch.setattr(batch_api, "cancel", asked.append)

    assert batch_lifecycle.poll(batch.pk, 0) == remote_status
    (name, args, countdown) = sent_tasks[-1]
    assert name == "runs.poll_batch" and 0 < countdown <= 600.0
    # Never past the grace's end: 10 s left of it, the next look is in 10 s, not the schedule's.
    ticket = Batch.objects.get(pk=batch.pk).poll_generation
    claimable(batch, deadline_at=timezone.now() - timedelta(seconds=590))
    assert batch_lifecycle.poll(batch.pk, ticket) == remote_status
    assert 9.0 < sent_tasks[-1][2] <= 10.1
    assert "expired" not in statuses(ids) and asked == []

    ticket = Batch.objects.get(pk=batch.pk).poll_generation
    claimable(batch, deadline_at=timezone.now() - timedelta(seconds=601))
    assert batch_lifecycle.poll(batch.pk, ticket) == "expired"
    assert statuses(ids) == {"expired"} and asked == ["batch_1"]


def test_the_deadline_counts_from_the_create_however_long_the_submit_took(sent_tasks, monkeypatch):
    """OpenAI's 24 h window starts at its create: a submit held back by the budget or retried
    for an hour moves our deadline with it, so the batch is not given up on an hour early."""
    batch = services.submit_batch(prompts(1))
    Batch.objects.filter(pk=batch.pk).update(deadline_at=timezone.now() + timedelta(hours=24))
    monkeypatch.setattr(batch_api, "upload", lambda name, data: "file_1")
    monkeypatch.setattr(batch_api, "create", lambda file_id, pk: RemoteBatch("b_1", "validating"))

    assert batch_lifecycle.submit(batch.pk)["submitted"] is True
    deadline = Batch.objects.get(pk=batch.pk).deadline_at
    assert deadline > timezone.now() + timedelta(hours=24.9)
    assert set(Run.objects.filter(batch=batch).values_list("deadline_at", flat=True)) == {deadline}


def test_a_cancel_that_died_before_ending_the_runs_is_finished_by_the_sweep_and_the_submit(
    sent_tasks, monkeypatch
):
    """The cancel of an unsent batch took its submit claim and marked it ``cancelling``, then
    died before its runs were ended. Once the claim is old enough for its holder to be dead, the
    sweep releases it, and the submit it sends finds a cancel and nothing sent: it ends the
    batch and its runs cancelled, creating nothing."""
    batch = services.create_batch(["a", "b"])
    ids = list(batch.runs.values_list("pk", flat=True))
    with monkeypatch.context() as died:
        died.setattr(batch_runs, "end_all", connection_refused)
        with pytest.raises(openai.APIConnectionError):
            services.cancel_batch(batch)
    assert Batch.objects.get(pk=batch.pk).status == "cancelling" and statuses(ids) == {"pending"}

    later = timezone.now() + timedelta(seconds=batch_writer.submit_claim_s(uploaded=False) + 1)
    sweep(now=later)
    assert ("runs.submit_batch", (batch.pk,), None) in sent_tasks
    monkeypatch.setattr(batch_api, "upload", pytest.fail)
    monkeypatch.setattr(batch_api, "create", pytest.fail)
    assert batch_lifecycle.submit(batch.pk)["status"] == "cancelled"
    assert statuses(ids) == {"cancelled"}
    assert Batch.objects.get(pk=batch.pk).status == "cancelled"


# --- a slow submit and the one that took its claim over -------------------------------------------


def slow_first_create(monkeypatch, second_finds: RemoteBatch | None) -> dict[str, object]:
    """Worker A's create answers only after the sweep took A's claim for dead and worker B
    submitted the batch (B's list search answers ``second_finds``); what B's submit returned."""
    seen: dict[str, object] = {}
    uploads = iter(["file_1", "file_2"])
    monkeypatch.setattr(batch_api, "upload", lambda name, data: next(uploads))
    monkeypatch.setattr(batch_api, "find", lambda *args: (second_finds, 1))

    def create(input_file_id: str, batch_id: int) -> RemoteBatch:
        if "b" not in seen:
            seen["b"] = {}
            long_ago = timezone.now() - timedelta(hours=1)
            Batch.objects.filter(pk=batch_id).update(submit_claimed_at=long_ago)
            assert sweep().batches == 1  # the claim is released, the submit enqueued again
            seen["b"] = batch_lifecycle.submit(batch_id)
            return RemoteBatch("batch_A", "validating")
        return RemoteBatch("batch_B", "validating")

    monkeypatch.setattr(batch_api, "create", create)
    return seen


def test_a_submit_that_outlived_its_claim_cancels_the_second_batch_it_created(
    sent_tasks, monkeypatch
):
    """A's create reaches OpenAI but answers late; meanwhile B (the claim's new holder) does not
    see A's batch in the list and creates its own. The first remote id saved is followed; A,
    coming back second with another batch, cancels it instead of overwriting B's."""
    runs = prompts(2)
    batch = services.submit_batch(runs)
    seen = slow_first_create(monkeypatch, second_finds=None)
    asked: list[str] = []
    monkeypatch.setattr(batch_api, "cancel", asked.append)

    first = batch_lifecycle.submit(batch.pk)

    assert seen["b"]["remote_id"] == "batch_B"
    assert first["submitted"] is False and asked == ["batch_A"]
    batch.refresh_from_db()
    assert (batch.remote_id, batch.status) == ("batch_B", "validating")
    assert statuses([r.pk for r in runs]) == {"queued"}
    assert RunEvent.objects.filter(run__batch=batch, to_status="queued").count() == 2
    # Every call made is counted: A's upload, both creates, B's list search, A's cancel.
    assert batch.api_calls == 5


def test_a_late_submit_leaves_the_batch_alone_when_the_new_holder_adopted_it(
    sent_tasks, monkeypatch
):
    """B finds A's batch in the list (our id and A's input file in its metadata) and follows it:
    when A's answer comes back with that same batch, nothing is cancelled."""
    batch = services.submit_batch(prompts(1))
    slow_first_create(monkeypatch, second_finds=RemoteBatch("batch_A", "validating"))
    asked: list[str] = []
    monkeypatch.setattr(batch_api, "cancel", asked.append)

    assert batch_lifecycle.submit(batch.pk)["submitted"] is False
    assert Batch.objects.get(pk=batch.pk).remote_id == "batch_A" and asked == []


def test_a_submit_that_lost_its_claim_during_the_upload_creates_nothing(sent_tasks, monkeypatch):
    batch = services.submit_batch(prompts(1))

    def upload(name: str, data: bytes) -> str:
        Batch.objects.filter(pk=batch.pk).update(submit_claimed_at=None)  # released meanwhile
        return "file_1"

    monkeypatch.setattr(batch_api, "upload", upload)
    monkeypatch.setattr(batch_api, "create", pytest.fail)
    assert batch_lifecycle.submit(batch.pk)["reason"] == "claim lost"
    assert Batch.objects.get(pk=batch.pk).input_file_id == ""


# --- files that cannot be downloaded --------------------------------------------------------------


def test_a_batch_that_ended_at_openai_is_not_failed_by_our_download_errors(
    sent_tasks, monkeypatch, settings
):
    """OpenAI completed (and billed) it; our downloads keep failing. Until the deadline and its
    grace (a batch may end in its grace) it is retried on countdowns, the retries spent or not,
    its output file id kept; once past them with the retries spent, it ends as OpenAI reports
    it, each run failed with a message naming the file, never ``failed`` as a batch."""
    settings.RUNS_MAX_ERROR_RETRIES = 1
    settings.RUNS_BATCH_GRACE_S = 600.0
    batch, ids = batch_of(2)
    ended = ended_remotely(output_file_id="file_out")
    monkeypatch.setattr(batch_api, "retrieve", lambda remote_id: ended)
    monkeypatch.setattr(batch_api, "download", connection_refused)

    for ticket in range(3):  # the third is long past the one retry the policy allows
        claimable(Batch.objects.get(pk=batch.pk))
        assert batch_lifecycle.poll(batch.pk, ticket) == "retry"
        row = Batch.objects.get(pk=batch.pk)
        assert (row.status, row.output_file_id, row.error_retries) == (
            "in_progress",
            "file_out",
            ticket + 1,
        )
    assert statuses(ids) == {"queued"}
    claimable(row, deadline_at=timezone.now() - timedelta(seconds=1))  # in the grace
    assert batch_lifecycle.poll(batch.pk, 3) == "retry"

    claimable(row, deadline_at=timezone.now() - timedelta(seconds=601))
    assert batch_lifecycle.poll(batch.pk, 4) == "download_failed"
    row.refresh_from_db()
    assert (row.status, row.last_error_code, row.output_file_id) == (
        "completed",
        "download_failed",
        "file_out",
    )
    failed = Run.objects.filter(pk__in=ids)
    assert set(failed.values_list("status", "last_error_code")) == {("failed", "download_failed")}
    assert "file_out" in failed.first().last_error


# --- an early webhook -----------------------------------------------------------------------------


def test_an_early_batch_event_is_applied_by_the_first_poll(sent_tasks, monkeypatch):
    """``batch.completed`` was stored before the submit saved the remote id, and committed after
    the submit looked for waiting events: it is ``unknown_object``. The batch's first poll (an
    hour away on the safety net) applies it at its first tick, a hop included, and the woken poll
    does the one retrieve."""
    batch = services.submit_batch(prompts(1), strategy="webhook")
    payload = {"type": "batch.completed", "data": {"id": "batch_early"}}
    event, *_ = events.record(
        "wh_early",
        event_id="evt_1",
        event_type="batch.completed",
        object_id="batch_early",
        payload=payload,
        created_at=None,
    )
    assert event.outcome == "unknown_object"
    an_hour = timezone.now() + timedelta(hours=1)
    Batch.objects.filter(pk=batch.pk).update(
        remote_id="batch_early", status="validating", next_poll_at=an_hour
    )
    monkeypatch.setattr(batch_api, "retrieve", pytest.fail)

    assert batch_lifecycle.poll(batch.pk, 0) == "woken"
    event.refresh_from_db()
    assert (event.outcome, event.batch_id) == ("applied", batch.pk)
    batch.refresh_from_db()
    assert (batch.webhook_events, batch.poll_generation) == (1, 2)
    assert sent_tasks[-1] == ("runs.poll_batch", (batch.pk, 2), None)
    assert WebhookEvent.objects.filter(outcome="unknown_object").count() == 0
