"""The engine's one writer: what applying a decision writes, and what it enqueues.

Pure database tests (no broker: ``sent_tasks`` records what would be enqueued, by task name).
"""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from runs.engine import lifecycle, writer
from runs.engine.decisions import Counters, Decision, Move
from runs.models import Run

pytestmark = pytest.mark.django_db


def test_a_terminal_decision_saves_its_counters_in_the_same_update_as_the_status(
    make_run, sent_tasks
):
    run = make_run("in_progress", remote_id="resp_1")
    decision = Decision(
        run.pk,
        "completed",
        ticket=run.poll_generation,
        move=Move("completed", "poll", expected="in_progress", fields={"output_text": "hi"}),
        counters=Counters(api_calls=2, polls=1),
    )
    with CaptureQueriesContext(connection) as queries:
        assert writer.apply(decision) is True
    run_updates = [q["sql"] for q in queries if q["sql"].startswith('UPDATE "runs_run"')]
    assert len(run_updates) == 1  # whoever sees "completed" sees the final counters
    run.refresh_from_db()
    assert (run.status, run.api_calls, run.polls, run.output_text) == ("completed", 2, 1, "hi")
    assert sent_tasks == []  # an ended run arms nothing


def test_a_rearm_holding_a_stale_ticket_arms_nothing_but_still_counts(make_run, sent_tasks):
    run = make_run("in_progress", remote_id="resp_1")
    stale = run.poll_generation
    assert writer.wake(run.pk)  # a webhook took a fresh ticket meanwhile
    sent_tasks.clear()
    writer.apply(
        Decision(run.pk, "in_progress", ticket=stale, poll_in_s=1.0, counters=Counters(1, 1))
    )
    assert sent_tasks == []
    run.refresh_from_db()
    assert (run.api_calls, run.polls) == (1, 1)


def test_a_long_wait_is_stored_and_reached_by_short_hops_without_api_calls(
    make_run, sent_tasks, settings
):
    settings.RUNS_MAX_COUNTDOWN_S = 2.0
    run = make_run("in_progress", remote_id="resp_1")
    writer.apply(Decision(run.pk, "waiting", ticket=run.poll_generation, poll_in_s=7200.0))
    run.refresh_from_db()
    assert run.next_poll_at - timezone.now() > timedelta(seconds=7190)
    (name, args, countdown) = sent_tasks.pop()
    assert (name, countdown) == ("runs.poll_run", 2.0)  # never one long countdown

    with mock.patch("runs.engine.lifecycle.get_backend") as backend:
        assert lifecycle.poll(*args) == "hop"
    backend.assert_not_called()
    (name, _, countdown) = sent_tasks.pop()
    assert (name, countdown) == ("runs.poll_run", 2.0)
    assert Run.objects.get(pk=run.pk).polls == 0


def test_a_duplicate_poll_finds_its_ticket_taken(make_run, sent_tasks):
    run = make_run("in_progress", remote_id="resp_1")
    Run.objects.filter(pk=run.pk).update(next_poll_at=timezone.now() + timedelta(hours=1))
    assert lifecycle.poll(run.pk, run.poll_generation) == "hop"
    assert lifecycle.poll(run.pk, run.poll_generation) == "skipped"


def test_a_start_retry_releases_the_claim_and_starts_again_later(make_run, sent_tasks):
    run = make_run("pending")
    assert writer.claim_start(run.pk)
    assert not writer.claim_start(run.pk)  # a duplicate start_run does nothing
    writer.apply(Decision(run.pk, "retry", start_in_s=3.0, errors="count"))
    run.refresh_from_db()
    assert run.start_claimed_at is None and run.error_retries == 1
    assert sent_tasks == [("runs.start_run", (run.pk,), 3.0)]


def test_a_claim_reads_the_run_as_a_query_would_in_the_same_statement(make_run):
    """The claim's ``UPDATE ... RETURNING`` builds the run itself (``sql.returned_runs``): every
    field converted as the ORM converts it (JSON, decimals, aware datetimes), saved-state and all,
    with no second query."""
    from decimal import Decimal

    run = make_run("in_progress", remote_id="resp_1", metadata={"k": "v"})
    Run.objects.filter(pk=run.pk).update(
        usage={"total_tokens": 7}, cost=Decimal("0.000150"), next_poll_at=timezone.now()
    )
    with CaptureQueriesContext(connection) as queries:
        claimed = writer.claim_poll(run.pk, run.poll_generation)
    assert len(queries) == 1
    expected = Run.objects.get(pk=run.pk)
    assert claimed is not None and not claimed._state.adding
    for field in Run._meta.concrete_fields:
        assert getattr(claimed, field.attname) == getattr(expected, field.attname), field.name
    assert claimed.next_poll_at.tzinfo is not None and claimed.metadata == {"k": "v"}


def test_a_start_claim_reads_its_threads_remote_id_too(make_run):
    run = make_run("pending")
    claimed = writer.claim_start(run.pk)
    assert claimed is not None and claimed.thread_remote_id == ""  # no conversation yet
    assert claimed.status == "pending" and claimed.start_claimed_at is not None


@pytest.mark.django_db
def test_an_error_retry_never_waits_past_the_runs_deadline(make_run):
    """A Retry-After of minutes would otherwise expire the run minutes late."""
    import httpx2
    import openai

    from runs.engine.answers import decide_error

    run = make_run("in_progress", remote_id="resp_1")
    run.deadline_at = timezone.now() + timedelta(seconds=20)
    request = httpx2.Request("GET", "http://sim/v1/responses/resp_1")
    throttled = openai.RateLimitError(
        "slow down",
        response=httpx2.Response(429, headers={"retry-after": "240"}, request=request),
        body=None,
    )

    decision = decide_error(run, throttled, 3, Counters(), what="retrieve", source="poll")

    assert decision.outcome == "retry"
    assert 19 <= decision.poll_in_s <= 20.1

    # A start is not capped: nothing in it looks at the deadline, so a retry capped to it
    # would create past it, every 0.05 s; the sweep expires the pending run instead.
    pending = make_run(metadata=None)
    pending.deadline_at = run.deadline_at
    start = decide_error(pending, throttled, None, Counters(), what="create", source="start")
    assert start.start_in_s >= 240 and start.poll_in_s is None


@pytest.mark.django_db
def test_an_account_out_of_credit_fails_a_start_but_keeps_polling_a_running_run(make_run):
    import httpx2
    import openai

    from runs.engine.answers import decide_error

    request = httpx2.Request("GET", "http://sim/v1/responses/resp_1")
    no_credit = openai.RateLimitError(
        "You exceeded your current quota",
        response=httpx2.Response(429, request=request),
        body={"code": "insufficient_quota"},
    )
    running = make_run("in_progress", remote_id="resp_1")
    pending = make_run()

    polled = decide_error(running, no_credit, 3, Counters(), what="retrieve", source="poll")
    started = decide_error(pending, no_credit, None, Counters(), what="create", source="start")

    assert polled.outcome == "retry" and polled.poll_in_s is not None
    assert started.outcome == "failed" and started.move.fields["last_error_code"] == (
        "insufficient_quota"
    )


def test_a_good_read_ends_the_error_streak_before_the_tool_round_that_follows(
    make_run, settings, monkeypatch
):
    """Reads may fail 4x ``RUNS_MAX_ERROR_RETRIES`` times in a row through an outage. The good
    read that ends it resets the count there and then, so the submit of the tool round it
    starts gets its own tries, not what the reads left of them (none, here)."""
    from runs.backends.base import RemoteState, ToolCallRequest
    from runs.engine import tool_round

    settings.RUNS_MAX_ERROR_RETRIES = 2
    run = make_run("in_progress", remote_id="resp_1")
    Run.objects.filter(pk=run.pk).update(error_retries=7, next_poll_at=timezone.now())
    run = writer.claim_poll(run.pk, run.poll_generation)
    asks = RemoteState(
        "resp_1", "requires_action", "requires_action",
        tool_calls=(ToolCallRequest("call_1", "add", "{}"),),
    )  # fmt: skip
    backend = mock.Mock(retrieve=mock.Mock(return_value=asks))
    monkeypatch.setattr(lifecycle, "get_backend", lambda name: backend)
    seen: list[int] = []
    monkeypatch.setattr(
        tool_round,
        "on_answer",
        lambda run, *a: seen.append(run.error_retries) or Decision(run.pk, "x"),
    )

    lifecycle.decide_poll(run)

    assert seen == [0]  # what the submit's error policy will count from
    assert Run.objects.get(pk=run.pk).error_retries == 0
