"""The shared request budget under load, through the real broker and worker.

``RUNS_MAX_RPS`` is set far below what a few runs polling on a fast schedule ask for, so starts,
polls and tool-output submissions all meet an empty bucket. A deferral must delay a call, never
drop it or repeat it: every run still ends, and the simulator receives each tool output once.

Where a test needs a call to meet an empty bucket it spends the bucket first, as other workers
would have (``spend``): what happens next is the engine's own doing.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

import pytest

from runs import budget
from runs.models import ToolCall
from runs.services import create_run
from runs.tasks import start_run

from .through_broker import QUICK, wait_for

pytestmark = pytest.mark.integration

TOOL_ROUND = {"sim_tool_rounds": "1", "sim_tool_args": '{"a": 2, "b": 3}'}
LIFECYCLE = "runs.engine.lifecycle"  # takes "create" for a start, "poll" for a poll
TOOL_ROUND_MODULE = "runs.engine.tool_round"  # takes "create" for a round's submission

Take = tuple[str, str, float]  # (kind, calling module, wait)


def spend(take: Callable[[str], float]) -> None:
    """Take every token left, as a burst of other workers' calls would."""
    while take("create") == 0:
        pass


@pytest.fixture
def bucket(token_bucket, quick_polls):
    """The shared budget in the private Redis, full (``token_bucket``), and a fast schedule."""
    return token_bucket


@pytest.fixture
def takes(monkeypatch) -> list[Take]:
    """Every ``budget.take`` the engine makes, as ``(kind, calling module, wait)``; calls through.

    The calling module tells a start's create (``lifecycle``) from a tool round's submission
    (``tool_round``), which both take a ``"create"`` token. The bucket is spent once, just
    before the first submission asks, so that one meets an empty bucket.
    """
    seen: list[Take] = []
    lock = threading.Lock()
    real_take = budget.take
    spent_before_submit = threading.Event()

    def take(kind: str, *, queue: bool = True) -> float:
        caller = sys._getframe(1).f_globals["__name__"]
        if caller == TOOL_ROUND_MODULE and not spent_before_submit.is_set():
            spent_before_submit.set()
            spend(real_take)
        wait = real_take(kind, queue=queue)
        with lock:
            seen.append((kind, caller, wait))
        return wait

    monkeypatch.setattr(budget, "take", take)
    return seen


def deferred(takes: list[Take], kind: str, caller: str) -> int:
    return sum(1 for k, c, wait in takes if (k, c) == (kind, caller) and wait > 0)


def test_over_budget_starts_polls_and_submits_are_deferred_and_each_output_is_sent_once(
    bucket, takes, worker, simulator, wait_terminal
):
    """Six runs (three with a tool round) on 6 calls a second, started on a spent bucket."""
    # A burst of 6 tokens, 1.2 of them kept for creates.
    bucket.RUNS_MAX_RPS = 6.0
    runs = [
        create_run(
            f"What is 2 + 3? ({i})",
            tools=["add"] if i % 2 else None,
            metadata={**QUICK, **(TOOL_ROUND if i % 2 else {})},
        )
        for i in range(6)
    ]
    spend(budget.take)
    for run in runs:
        start_run.delay(run.pk)
    finished = [wait_terminal(run.pk, timeout=60) for run in runs]

    assert [r.status for r in finished] == ["completed"] * 6
    assert deferred(takes, "create", LIFECYCLE) > 0  # starts waited for the budget
    assert deferred(takes, "poll", LIFECYCLE) > 0  # polls waited
    assert deferred(takes, "create", TOOL_ROUND_MODULE) > 0  # a round's submission waited
    calls = list(ToolCall.objects.filter(run__in=runs))
    assert len(calls) == 3
    received = simulator.stats()["tool_outputs_by_call_id"]
    assert {c.call_id: received.get(c.call_id) for c in calls} == {c.call_id: 1 for c in calls}
    assert {(c.state, c.output, c.submit_attempts) for c in calls} == {("submitted", "5", 1)}
    # One response per run, plus on Responses one per submitted round (it carries the outputs).
    by_run = simulator.stats()["creates_by_run_id"]
    assert [by_run[str(r.pk)] for r in finished] == [1, 2, 1, 2, 1, 2]


def test_a_deferred_submission_gets_through_on_a_small_budget(bucket, takes, worker, simulator):
    """One run alone on 2 calls a second: a deferred submission is tried again as a submission
    (not behind a poll that would spend its token), so it gets through after a few tries."""
    bucket.RUNS_MAX_RPS = 2.0
    run = create_run("What is 2 + 3?", tools=["add"], metadata={**QUICK, **TOOL_ROUND})
    start_run.delay(run.pk)

    def submitted_or_starved() -> bool:
        sent = ToolCall.objects.filter(run=run, state="submitted").exists()
        return sent or deferred(takes, "create", TOOL_ROUND_MODULE) > 5

    wait_for(submitted_or_starved, "the submission to get through or to be deferred 6 times")
    assert deferred(takes, "create", TOOL_ROUND_MODULE) <= 5
    assert ToolCall.objects.get(run=run).state == "submitted"
