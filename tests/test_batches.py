"""Batches without OpenAI: the files, the checks before a batch is made, settling its runs once,
``batch.*`` webhooks, the sweep's rescue and the schedule. The broker is a stand-in
(``sent_tasks``); tests/test_batches_through_broker.py runs the whole loop with a worker and the
simulator.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from runs import services
from runs.engine import (
    batch_files,
    batch_lifecycle,
    batch_runs,
    batch_writer,
    enqueue,
    events,
    lifecycle,
)
from runs.engine.batch_files import LineResult
from runs.engine.sweep import sweep
from runs.models import Batch, Message, Run, RunEvent, Thread, WebhookEvent
from runs.status import Mode

pytestmark = pytest.mark.django_db


def prompts(n: int, **kwargs) -> list[Run]:
    return [services.create_run(f"prompt {i}", **kwargs) for i in range(n)]


def output_line(run_id: int, text: str = "answer", status: str = "completed") -> dict:
    return {
        "id": f"batch_req_{run_id}",
        "custom_id": str(run_id),
        "response": {
            "status_code": 200,
            "request_id": "req_1",
            "body": {
                "id": f"resp_{run_id}",
                "object": "response",
                "status": status,
                "completed_at": 1_700_000_000,
                "output": [
                    {
                        "type": "message",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": text, "annotations": []}],
                    }
                ],
                "usage": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
            },
        },
        "error": None,
    }


def jsonl(*lines: dict) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


# --- the files --------------------------------------------------------------------------------


def test_a_line_carries_the_run_id_its_message_and_its_options():
    run = services.create_run("Summarise this", instructions="Be brief", max_output_tokens=64)
    line = batch_files.request_line(run, "Summarise this")
    assert line["custom_id"] == str(run.pk)
    assert (line["method"], line["url"]) == ("POST", "/v1/responses")
    body = line["body"]
    assert body["model"] == run.model and body["instructions"] == "Be brief"
    assert body["input"] == [{"type": "message", "role": "user", "content": "Summarise this"}]
    assert body["metadata"]["run_id"] == str(run.pk)
    assert body["max_output_tokens"] == 64
    assert "background" not in body and "background_options" not in body
    data = batch_files.input_file([line, line])
    assert data.count(b"\n") == 2 and json.loads(data.splitlines()[0]) == line


def test_output_and_error_lines_become_one_result_per_run():
    data = jsonl(
        output_line(1, "four"),
        {"custom_id": "2", "response": {"status_code": 500, "body": {"error": {"message": "x"}}}},
        {"custom_id": "3", "response": None, "error": {"code": "batch_expired", "message": "late"}},
        {"custom_id": "4", "response": None, "error": {"code": "batch_cancelled", "message": "c"}},
        output_line(5, "cut off at max_outp", status="incomplete"),
    )
    results = batch_files.parse(data + b"not json\n\n")
    assert results[1] == LineResult(
        1,
        "completed",
        remote_id="resp_1",
        output_text="four",
        usage={"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
        remote_completed_at=results[1].remote_completed_at,
    )
    assert (results[2].status, results[2].error_code) == ("failed", "http_500")
    assert (results[3].status, results[3].error_code) == ("expired", "batch_expired")
    assert (results[4].status, results[4].error_code) == ("cancelled", "batch_cancelled")
    assert (results[5].status, results[5].error_code) == ("incomplete", "incomplete")
    assert results[5].output_text == "cut off at max_outp"  # paid for: kept, as in background
    assert set(results) == {1, 2, 3, 4, 5}  # the unreadable line is skipped, not a crash


def test_a_run_no_file_mentions_ends_as_the_batch_did():
    assert batch_files.unmentioned("completed", 7).error_code == "missing_result"
    assert batch_files.unmentioned("expired", 7).status == "expired"
    assert batch_files.unmentioned("cancelled", 7).status == "cancelled"
    failed = batch_files.batch_errors([{"code": "invalid_request", "line": 2, "message": "bad"}])
    assert failed == "the batch failed: invalid_request (line 2): bad"


# --- making a batch: every check before anything is written -------------------------------------


def test_submit_batch_makes_the_batch_takes_the_runs_and_sends_it_on_commit(
    sent_tasks, django_capture_on_commit_callbacks
):
    runs = prompts(3, metadata={"customer": "acme"})
    with django_capture_on_commit_callbacks(execute=True):
        batch = services.submit_batch(runs, strategy="webhook")
    assert (batch.status, batch.owner, batch.strategy) == ("pending", "", "webhook")
    assert batch.model == runs[0].model and batch.metadata == {"customer": "acme"}
    assert batch.deadline_at > timezone.now() + timedelta(hours=24)
    for run in Run.objects.filter(pk__in=[r.pk for r in runs]):
        assert (run.batch_id, run.mode, run.status) == (batch.pk, Mode.BATCH, "pending")
        assert run.start_claimed_at is not None  # the batch's: no start_run can create it
        assert run.deadline_at == batch.deadline_at
    assert sent_tasks == [("runs.submit_batch", (batch.pk,), None)]


def test_a_start_run_for_a_batch_run_creates_nothing(sent_tasks):
    run = prompts(1)[0]
    services.submit_batch([run])
    assert lifecycle.start(run.pk)["started"] is False
    Run.objects.filter(pk=run.pk).update(start_claimed_at=None)  # released by hand, say
    assert lifecycle.start(run.pk) == {
        "run_id": run.pk,
        "started": False,
        "reason": f"belongs to batch {run.batch_id or Run.objects.get(pk=run.pk).batch_id}",
    }


def refused(runs, message: str, **kwargs) -> None:
    before = {r.pk: (r.batch_id, r.start_claimed_at, r.mode) for r in Run.objects.all()}
    with pytest.raises(ValidationError, match=message):
        services.submit_batch(runs, **kwargs)
    assert Batch.objects.count() == 0
    after = {r.pk: (r.batch_id, r.start_claimed_at, r.mode) for r in Run.objects.all()}
    assert after == before


def test_runs_with_tools_are_refused_with_nothing_written(sent_tasks):
    runs = prompts(2)
    runs.append(services.create_run("add these", tools=["add"]))
    refused(runs, "batch runs are single-turn: no tools, no conversation")
    assert sent_tasks == []


def test_a_conversation_is_refused_with_nothing_written(sent_tasks):
    two_messages = prompts(1)[0]
    services.add_message(two_messages.thread, "and another thing")
    refused([two_messages], "single-turn")
    remote = prompts(1)[0]
    Thread.objects.filter(pk=remote.thread_id).update(remote_id="conv_1")
    refused([remote], "single-turn")
    shared = Thread.objects.create()
    Message.objects.create(thread=shared, content="one")
    both = [services.create_run(thread=shared), services.create_run(thread=shared)]
    refused(both, "no other run")
    assert sent_tasks == []


def test_mixed_owners_other_backends_and_started_runs_are_refused(sent_tasks, run_row):
    refused(prompts(1, owner="client:a") + prompts(1, owner="client:b"), "one owner")
    refused(prompts(1, model="gpt-4.1") + prompts(1, model="gpt-4.1-mini"), "one model")
    refused(prompts(1, backend="assistants"), "Responses API")
    started = prompts(1)[0]
    Run.objects.filter(pk=started.pk).update(start_claimed_at=timezone.now())
    refused([started], "being started")
    refused([run_row("queued")], "is queued")
    refused([], "1 to")
    refused([123456789], "no run with id 123456789")
    assert sent_tasks == []


def test_a_spend_limit_reached_since_the_runs_were_made_refuses_the_batch(sent_tasks, settings):
    runs = prompts(2, metadata={"customer": "acme"})
    spent = services.create_run("earlier", metadata={"customer": "acme"})
    Run.objects.filter(pk=spent.pk).update(status="completed", cost="12.00")
    settings.RUNS_SPEND_LIMITS = {"customer": {"usd": "10.00", "period": "day"}}
    refused(runs, "spend limit reached: customer=acme")
    assert sent_tasks == []


def test_a_batch_over_the_input_file_limit_is_refused_before_any_row_is_written(
    sent_tasks, monkeypatch
):
    """50,000 prompts of one word with 100,000 characters of instructions are a 5 GB file:
    OpenAI refuses it, and its rows alone would fill the database. The file's size is known
    from the options and prompts, so it is refused up front, with the sizes."""
    options = {"instructions": "be brief", "max_output_tokens": 64, "metadata": {"k": "v"}}
    prompts = ["short", 'a longer prompt, \u00e9 and "quotes"']
    batch = services.create_batch(prompts, **options)
    made = len(batch_files.input_file(batch_runs.request_lines(batch.pk)))
    like = Run(model=batch.model, **options)
    estimate = batch_files.input_size(like, prompts)
    assert made <= estimate <= made + 2 * 2 * 19  # each line's two ids at their widest

    monkeypatch.setattr(batch_files, "INPUT_MAX_BYTES", estimate - 1)
    with pytest.raises(ValidationError, match=f"input file of {estimate:,} bytes"):
        services.create_batch(prompts, **options)
    assert (Batch.objects.count(), Run.objects.count()) == (1, 2)


def test_a_batch_is_no_way_around_a_spend_limit(sent_tasks, settings):
    """A batch of new runs passes where its last run would have passed alone, after the others
    at their estimates: $0.99 spent of $1.00, each run at most $0.0008 (1,000 output tokens of
    gpt-4.1-mini at the batch price), so 13 fit and 14 do not."""
    spent = services.create_run("earlier", metadata={"customer": "acme"})
    Run.objects.filter(pk=spent.pk).update(status="completed", cost="0.99")
    settings.RUNS_SPEND_LIMITS = {"customer": {"usd": "1.00", "period": "day"}}
    options = {"metadata": {"customer": "acme"}, "model": "gpt-4.1-mini", "max_output_tokens": 1000}

    with pytest.raises(ValidationError, match=r"would add up to \$0.0104 before the last"):
        services.create_batch([f"p{i}" for i in range(14)], **options)
    assert (Batch.objects.count(), Run.objects.count()) == (0, 1)
    assert services.create_batch([f"p{i}" for i in range(13)], **options).runs.count() == 13


def test_a_batch_of_several_limited_values_locks_them_all_first_in_one_order(
    sent_tasks, settings, monkeypatch
):
    """Two submits that each check ``team=a`` and ``team=b`` must not take their locks in
    opposite orders (PostgreSQL would abort one as a deadlock, a 500 where a refusal or a pass
    was due): every value's lock is taken first, sorted, before the checks lock again."""
    from runs import spend

    settings.RUNS_SPEND_LIMITS = {"team": {"usd": "10.00", "period": "day"}}
    runs = prompts(1, metadata={"team": "b"}) + prompts(1, metadata={"team": "a"})
    locked: list[tuple[str, str]] = []
    monkeypatch.setattr(spend, "_lock", lambda owner, key, value: locked.append((key, value)))

    services.submit_batch(runs)

    assert locked[:2] == [("team", "a"), ("team", "b")]


def test_a_run_joins_one_batch_only(sent_tasks, settings):
    run = prompts(1)[0]
    batch = services.submit_batch([run])
    with pytest.raises(ValidationError, match="being started"):
        services.submit_batch([run])
    assert Batch.objects.get() == batch
    settings.RUNS_BATCH_MAX_RUNS = 2
    with pytest.raises(ValidationError, match="1 to 2"):
        services.submit_batch(prompts(3))


def test_create_batch_is_all_or_nothing(sent_tasks):
    with pytest.raises(ValidationError, match="prompt"):
        services.create_batch(["fine", "   "])
    with pytest.raises(ValidationError, match="single-turn"):
        services.create_batch(["fine"], tools=["add"])
    with pytest.raises(ValidationError, match="2h"):
        services.create_batch(["fine"], completion_window="2h")
    with pytest.raises(ValidationError, match="reasoning_effort"):
        services.create_batch(["fine"], reasoning_effort="enormous")
    # What SQLite stores and PostgreSQL refuses (a DataError, a 500): refused on every database.
    with pytest.raises(ValidationError, match="prompt 1: a string holds a NUL"):
        services.create_batch(["fine", "nul \x00 inside"])
    with pytest.raises(ValidationError, match="instructions: a string holds a lone surrogate"):
        services.create_batch(["fine"], instructions="\udcff")
    with pytest.raises(ValidationError, match="model: a string holds a NUL"):
        services.create_batch(["fine"], model="gpt\x00")
    assert (Run.objects.count(), Batch.objects.count(), Thread.objects.count()) == (0, 0, 0)
    batch = services.create_batch(["one", "two"], metadata={"customer": "acme"}, owner="client:x")
    assert batch.runs.count() == 2 and batch.owner == "client:x"


def test_create_batch_makes_its_rows_in_a_few_statements_whatever_the_number_of_prompts(
    sent_tasks, settings
):
    """Options and spend limits are checked once, threads, messages and runs inserted in bulk:
    a batch of 25 prompts costs the statements of a batch of 3, not 25 ``create_run`` calls."""
    settings.RUNS_SPEND_LIMITS = {"customer": {"usd": "10.00", "period": "day"}}

    def statements(n: int) -> int:
        with CaptureQueriesContext(connection) as queries:
            services.create_batch(
                [f"prompt {i}" for i in range(n)],
                metadata={"customer": "acme"},
                owner="client:x",
                max_output_tokens=64,
            )
        return len(queries)

    few, many = statements(3), statements(25)
    # SQLite splits a bulk insert at its limit of bound parameters: one more statement there.
    assert few <= many <= few + (connection.vendor == "sqlite") and many <= 20
    batch = Batch.objects.first()
    runs = Run.objects.filter(batch=batch)
    assert runs.count() == 25 and set(runs.values_list("status", "mode")) == {("pending", "batch")}
    assert not runs.filter(start_claimed_at__isnull=True).exists()  # the batch's to start
    assert {(r.max_output_tokens, r.metadata["customer"]) for r in runs} == {(64, "acme")}
    said = Message.objects.filter(thread__runs__batch=batch).values_list("content", flat=True)
    assert sorted(said) == sorted(f"prompt {i}" for i in range(25))
    run = runs.order_by("pk").first()
    assert run.thread.messages.get().content == "prompt 0" and run.thread.owner == "client:x"
    assert run.deadline_at == batch.deadline_at


# --- settling a batch's runs, once ------------------------------------------------------------


def batch_of(n: int, status: str = "in_progress") -> tuple[Batch, list[int]]:
    runs = prompts(n)
    batch = services.submit_batch(runs)
    Batch.objects.filter(pk=batch.pk).update(status=status, remote_id="batch_1")
    ids = [r.pk for r in runs]
    batch_runs.move_runs(batch.pk, ("pending",), "queued", "create")
    return Batch.objects.get(pk=batch.pk), ids


def test_settling_moves_each_open_run_to_its_lines_end_in_a_few_statements(settings):
    settings.RUNS_BATCH_SETTLE_CHUNK = 10
    batch, ids = batch_of(25)
    results = batch_files.parse(jsonl(*(output_line(i, f"answer {i}") for i in ids[:20])))
    with CaptureQueriesContext(connection) as queries:
        moved = batch_runs.settle(
            batch.pk, results, lambda pk: batch_files.unmentioned("completed", pk), "poll"
        )
    assert moved == 25
    writes = [q["sql"] for q in queries if q["sql"].startswith(("UPDATE", "INSERT"))]
    assert len(writes) == 6  # per chunk of 10: one UPDATE of the runs, one INSERT of events
    assert (
        len(queries) <= 1 + 3 * 3 + 6
    )  # the ids, then per chunk lock + update + insert (+ savepoints)
    done = Run.objects.get(pk=ids[0])
    assert (done.status, done.output_text, done.remote_id) == (
        "completed",
        f"answer {ids[0]}",
        f"resp_{ids[0]}",
    )
    assert done.usage["output_tokens"] == 5 and done.completed_at is not None
    missing = Run.objects.get(pk=ids[-1])
    assert (missing.status, missing.last_error_code) == ("failed", "missing_result")
    event = done.events.last()
    assert (event.from_status, event.to_status, event.detail) == (
        "queued",
        "completed",
        {"batch_id": batch.pk},
    )


def test_a_line_whose_text_the_database_cannot_keep_still_settles_its_run():
    """PostgreSQL keeps no NUL (JSON's \\u0000) in text or jsonb: a settle that raised would
    fail again at every poll, and the batch would never end."""
    batch, ids = batch_of(1)
    line = output_line(ids[0], "a\x00b")
    line["response"]["body"]["usage"]["note"] = "\ud800"
    line["response"]["body"]["completed_at"] = 1e300  # past any date: read as unknown
    line["response"]["body"]["error"] = {"code": "x" * 100, "message": "m"}
    results = batch_files.parse(jsonl(line))
    batch_runs.settle(
        batch.pk, results, lambda pk: batch_files.unmentioned("completed", pk), "poll"
    )
    run = Run.objects.get(pk=ids[0])
    assert (run.output_text, run.usage, run.remote_completed_at) == ("a\ufffdb", None, None)
    assert run.last_error_code == "x" * 64


def test_a_second_settle_changes_nothing(settings):
    batch, ids = batch_of(5)
    results = batch_files.parse(jsonl(*(output_line(i) for i in ids)))
    batch_runs.settle(
        batch.pk, results, lambda pk: batch_files.unmentioned("completed", pk), "poll"
    )
    events = RunEvent.objects.count()
    again = batch_runs.settle(
        batch.pk, {}, lambda pk: batch_files.unmentioned("failed", pk), "poll"
    )
    assert again == 0 and RunEvent.objects.count() == events
    assert set(Run.objects.values_list("status", flat=True)) == {"completed"}
    assert batch_writer.finish(batch.pk, "completed")
    assert not batch_writer.finish(batch.pk, "failed")
    assert Batch.objects.get(pk=batch.pk).status == "completed"


def test_a_structured_run_whose_line_does_not_match_fails():
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "required": ["n"],
        "additionalProperties": False,
    }
    run = services.create_run("x", response_format=schema)
    ok = batch_runs.end_fields(run, LineResult(run.pk, "completed", output_text='{"n": 4}'))
    assert ok[0] == "completed" and ok[1]["parsed_output"] == {"n": 4}
    bad = batch_runs.end_fields(run, LineResult(run.pk, "completed", output_text='{"m": 4}'))
    assert bad[0] == "failed" and bad[1]["last_error_code"] == "output_schema_mismatch"


# --- webhooks, the sweep, the schedule --------------------------------------------------------


def record(event_type: str, object_id: str, webhook_id: str = "wh_1") -> WebhookEvent:
    payload = {"id": "evt_1", "type": event_type, "data": {"id": object_id}}
    event, *_ = events.record(
        webhook_id,
        event_id="evt_1",
        event_type=event_type,
        object_id=object_id,
        payload=payload,
        created_at=None,
    )
    return event


def test_a_batch_event_is_recorded_with_its_batch_and_wakes_it_once(sent_tasks):
    batch, _ = batch_of(2)
    payload = {"id": "evt_1", "type": "batch.completed", "data": {"id": "batch_1"}}
    event, _, ticket = events.record(
        "wh_1",
        event_id="evt_1",
        event_type="batch.completed",
        object_id="batch_1",
        payload=payload,
        created_at=None,
    )
    assert (event.batch_id, event.run_id, event.outcome) == (batch.pk, None, "applied")
    assert ticket == 1  # taken with the insert, in its transaction
    assert events.process(event, ticket=ticket) == "applied"
    batch.refresh_from_db()
    assert (batch.webhook_events, batch.poll_generation) == (1, 1)
    assert sent_tasks == [("runs.poll_batch", (batch.pk, 1), None)]
    again, created, _ = events.record(
        "wh_1",
        event_id="evt_1",
        event_type="batch.completed",
        object_id="batch_1",
        payload={},
        created_at=None,
    )
    assert not created and len(sent_tasks) == 1


def test_a_batch_event_before_the_remote_id_is_applied_once_it_is_saved(sent_tasks):
    runs = prompts(1)
    batch = services.submit_batch(runs)
    event = record("batch.completed", "batch_early")
    assert events.process(event, ticket=None) == "unknown_object"
    Batch.objects.filter(pk=batch.pk).update(remote_id="batch_early", status="in_progress")
    assert events.apply_waiting_batch(batch.pk, "batch_early") == 1
    assert WebhookEvent.objects.get().batch_id == batch.pk
    assert sent_tasks[-1][0] == "runs.poll_batch"


def test_an_event_for_an_ended_batch_is_stale(sent_tasks):
    batch, _ = batch_of(1)
    batch_writer.finish(batch.pk, "completed")
    assert record("batch.completed", "batch_1").outcome == "stale"
    assert sent_tasks == []


def test_the_sweep_wakes_overdue_batches_and_releases_stale_submits(sent_tasks, settings):
    """A submit claim is released once no call of its holder can still be under way: before the
    upload, the upload's ``RUNS_BATCH_FILE_TIMEOUT_S``; after it, the list search and the create
    (``RUNS_BATCH_FIND_PAGES`` x ``OPENAI_TIMEOUT_S`` + ``OPENAI_CREATE_TIMEOUT_S``); both plus
    ``RUNS_CLAIM_TIMEOUT_S``. A holder released too soon could create a second batch."""
    settings.RUNS_CLAIM_TIMEOUT_S = 60  # uploading: 600 + 60 s; uploaded: 3 x 10 + 30 + 60 s
    five_minutes_ago = timezone.now() - timedelta(minutes=5)
    late, _ = batch_of(1)
    Batch.objects.filter(pk=late.pk).update(next_poll_at=five_minutes_ago)
    uploading = services.submit_batch(prompts(1))
    Batch.objects.filter(pk=uploading.pk).update(submit_claimed_at=five_minutes_ago)
    stuck = services.submit_batch(prompts(1))
    Batch.objects.filter(pk=stuck.pk).update(
        submit_claimed_at=five_minutes_ago, input_file_id="file_1"
    )
    lost = services.submit_batch(prompts(1))
    Batch.objects.filter(pk=lost.pk).update(created_at=five_minutes_ago)
    report = sweep()
    assert report.batches == 3
    assert ("runs.poll_batch", (late.pk, 1), None) in sent_tasks
    assert sent_tasks.count(("runs.submit_batch", (stuck.pk,), None)) == 1
    assert ("runs.submit_batch", (lost.pk,), None) in sent_tasks
    assert Batch.objects.get(pk=uploading.pk).submit_claimed_at == five_minutes_ago
    Batch.objects.filter(pk=uploading.pk).update(
        submit_claimed_at=timezone.now() - timedelta(minutes=12)
    )
    sweep()
    assert ("runs.submit_batch", (uploading.pk,), None) in sent_tasks
    # A batch run's start claim is its batch's: never released or restarted by the sweep.
    assert not [t for t in sent_tasks if t[0] == "runs.start_run"]


def test_a_lost_submit_waits_while_its_queue_is_deep_then_goes_once_per_grace(
    sent_tasks, settings, monkeypatch
):
    """As a run's lost start (tests/test_backlog.py): not added to a queue already a batch deep,
    and stamped when re-sent, so a submit still waiting is not re-sent at every pass."""
    settings.RUNS_SWEEP_GRACE_S = 10
    lost = services.submit_batch(prompts(1))
    Batch.objects.filter(pk=lost.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    submit = ("runs.submit_batch", (lost.pk,), None)
    queued = sent_tasks.count(submit)
    monkeypatch.setattr(enqueue, "RESCUE_FLOOR", 0)
    monkeypatch.setattr(enqueue, "waiting", lambda name, kind=None: 5000)
    sweep()
    assert sent_tasks.count(submit) == queued
    monkeypatch.setattr(enqueue, "waiting", lambda name, kind=None: 0)
    sweep()
    sweep()
    assert sent_tasks.count(submit) == queued + 1


def test_the_schedule_follows_the_24h_clock_and_never_hands_the_broker_a_long_countdown(
    sent_tasks, settings
):
    batch, _ = batch_of(1)
    plan = batch_files.schedule(batch)
    assert (plan.base, plan.factor, plan.cap) == (30.0, 1.5, 600.0)
    settings.RUNS_TIME_SCALE = 0.01
    assert batch_files.schedule(batch).cap == pytest.approx(6.0)
    batch.strategy = "webhook"
    assert batch_files.schedule(batch).base == pytest.approx(36.0)
    assert batch_writer.rearm(batch.pk, batch.poll_generation, 1000.0)
    assert sent_tasks[-1] == ("runs.poll_batch", (batch.pk, 0), 300.0)


def claimable(batch: Batch, **fields) -> Batch:
    """The batch as a poll holding ticket 0 finds it (due now)."""
    Batch.objects.filter(pk=batch.pk).update(next_poll_at=timezone.now(), **fields)
    return Batch.objects.get(pk=batch.pk)


def test_a_transient_error_is_retried_on_a_countdown_and_counted(sent_tasks, monkeypatch):
    import httpx2
    import openai

    from runs.backends import batch_api

    def refused(remote_id: str):
        request = httpx2.Request("GET", "http://sim/v1/batches/batch_1")
        raise openai.APIConnectionError(request=request) from httpx2.ConnectError("refused")

    monkeypatch.setattr(batch_api, "retrieve", refused)
    batch, ids = batch_of(2)
    claimable(batch)
    assert batch_lifecycle.poll(batch.pk, 0) == "retry"
    batch.refresh_from_db()
    assert (batch.error_retries, batch.api_calls, batch.status) == (1, 1, "in_progress")
    name, args, countdown = sent_tasks[-1]
    assert (name, args) == ("runs.poll_batch", (batch.pk, 1)) and 0 < countdown <= 60
    assert set(Run.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"queued"}


def test_a_batch_that_cannot_be_followed_fails_and_is_cancelled_at_openai(
    sent_tasks, monkeypatch, settings
):
    """Given up on after its retries (a read's: 4x ``RUNS_MAX_ERROR_RETRIES``), a batch is not
    left running (and billed) at OpenAI."""
    import httpx2
    import openai

    from runs.backends import batch_api

    def refused(remote_id: str):
        request = httpx2.Request("GET", "http://sim/v1/batches/batch_1")
        raise openai.APIConnectionError(request=request) from httpx2.ConnectError("refused")

    cancelled: list[str] = []
    monkeypatch.setattr(batch_api, "retrieve", refused)
    monkeypatch.setattr(batch_api, "cancel", cancelled.append)
    settings.RUNS_MAX_ERROR_RETRIES = 1
    batch, ids = batch_of(2)

    for ticket in range(4):
        assert batch_lifecycle.poll(claimable(batch).pk, ticket) == "retry"
    assert batch_lifecycle.poll(claimable(batch).pk, 4) == "failed"

    batch.refresh_from_db()
    assert cancelled == ["batch_1"]
    assert batch.status == "failed" and "a cancel was sent to OpenAI" in batch.last_error
    assert set(Run.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"failed"}


def test_a_cancel_whose_message_was_lost_is_sent_by_the_next_poll_and_by_asking_again(
    sent_tasks, monkeypatch, django_capture_on_commit_callbacks
):
    """The cancel_batch message was lost (a Redis flush, a worker killed after the submit saved
    the remote id): the batch reads cancelling here and in progress at OpenAI."""
    from runs.backends import batch_api

    cancelled: list[str] = []
    monkeypatch.setattr(batch_api, "cancel", cancelled.append)
    monkeypatch.setattr(batch_api, "retrieve", lambda r: batch_api.RemoteBatch(r, "in_progress"))
    batch, _ = batch_of(2, status="cancelling")

    batch_lifecycle.poll(claimable(batch).pk, 0)
    assert cancelled == ["batch_1"]

    # Once OpenAI has it (cancelling, or finalizing: too late to cancel), no poll sends it again.
    for remote_status in ("cancelling", "finalizing"):
        monkeypatch.setattr(
            batch_api, "retrieve", lambda r, s=remote_status: batch_api.RemoteBatch(r, s)
        )
        ticket = Batch.objects.get(pk=batch.pk).poll_generation
        assert batch_lifecycle.poll(claimable(batch).pk, ticket) == remote_status
    assert cancelled == ["batch_1"]

    with django_capture_on_commit_callbacks(execute=True):
        assert services.cancel_batch(Batch.objects.get(pk=batch.pk)) == "cancelling"
    assert ("runs.cancel_batch", (batch.pk,), None) in sent_tasks


def test_a_submit_killed_after_saving_the_batch_leaves_its_runs_to_the_first_poll(
    sent_tasks, monkeypatch
):
    """The remote id was saved, then the worker died before its runs were marked sent: the
    redelivered submit finds the batch sent and exits. The first poll does what it left."""
    from runs.backends import batch_api

    monkeypatch.setattr(batch_api, "retrieve", lambda r: batch_api.RemoteBatch(r, "in_progress"))
    runs = prompts(2)
    batch = services.submit_batch(runs)
    Batch.objects.filter(pk=batch.pk).update(status="in_progress", remote_id="batch_1")

    batch_lifecycle.poll(claimable(batch).pk, 0)

    ids = [r.pk for r in runs]
    assert set(Run.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"in_progress"}
    assert not Message.objects.filter(thread__runs__pk__in=ids, sent_at__isnull=True).exists()


def test_a_batch_uploaded_but_not_created_is_not_cancelled_here_a_create_may_have_reached_openai(
    sent_tasks,
):
    """The create timed out after the upload: OpenAI may have made the batch. The cancel goes
    the remote way; the retried submit finds the batch (and cancels it) or ends it cancelled."""
    runs = prompts(2)
    batch = services.submit_batch(runs)
    Batch.objects.filter(pk=batch.pk).update(input_file_id="file_1")
    assert services.cancel_batch(Batch.objects.get(pk=batch.pk)) == "cancelling"
    assert set(
        Run.objects.filter(pk__in=[r.pk for r in runs]).values_list("status", flat=True)
    ) == {"pending"}


def test_the_sweep_leaves_a_batchs_pending_runs_to_their_batch(sent_tasks):
    """A submit held back past the deadline the runs got when the batch was made moves that
    deadline once it creates the batch: the sweep must not expire them meanwhile, or their lines
    would be sent (and billed) for runs already ended, or the batch end as cancelled."""
    runs = prompts(2)
    batch = services.submit_batch(runs)
    ids = [r.pk for r in runs]
    Run.objects.filter(pk__in=ids).update(deadline_at=timezone.now() - timedelta(seconds=1))
    alone = services.create_run("not in a batch")
    Run.objects.filter(pk=alone.pk).update(deadline_at=timezone.now() - timedelta(seconds=1))

    assert sweep().expired == 1
    assert set(Run.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"pending"}
    assert Run.objects.get(pk=alone.pk).status == "expired"
    assert Batch.objects.get(pk=batch.pk).status == "pending"


def test_past_its_deadline_a_batch_is_cancelled_and_its_open_runs_expire(sent_tasks, monkeypatch):
    from runs.backends import batch_api

    cancelled: list[str] = []
    monkeypatch.setattr(batch_api, "cancel", cancelled.append)
    still_running = batch_api.RemoteBatch("batch_1", "in_progress")
    monkeypatch.setattr(batch_api, "retrieve", lambda remote_id: still_running)
    batch, ids = batch_of(3)
    claimable(batch, deadline_at=timezone.now() - timedelta(seconds=1))
    assert batch_lifecycle.poll(batch.pk, 0) == "expired"
    batch.refresh_from_db()
    assert cancelled == ["batch_1"]
    assert (batch.status, batch.last_error_code) == ("expired", "deadline_exceeded")
    runs = Run.objects.filter(pk__in=ids)
    assert set(runs.values_list("status", "last_error_code")) == {("expired", "deadline_exceeded")}
    assert set(RunEvent.objects.filter(to_status="expired").values_list("source", flat=True)) == {
        "deadline"
    }
    assert batch_lifecycle.poll(batch.pk, 1) == "skipped"  # ended: no ticket to take
