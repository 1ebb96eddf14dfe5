"""Tool calls end to end, on both APIs: ``requires_action`` is a loop, never a hang.

Real worker, real Redis, the simulator over HTTP. The simulator plays the model: metadata
``sim_tool_rounds`` makes it ask for ``sim_tool_name`` (default: the first tool sent) with
``sim_tool_args`` that many times before it answers; ``sim_bad_args`` makes the arguments bad JSON.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pytest
from django.core.exceptions import ValidationError

from runs import pricing
from runs.client import get_client
from runs.models import Run, ToolCall
from runs.services import cancel_run, create_run, owed_tool_calls, submit_tool_output
from runs.tasks import start_run

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    # A faster schedule than the tutorial's: these tests are about the loop, not the backoff.
    pytest.mark.usefixtures("quick_polls"),
]

#: Each simulated model turn takes 0.3 s.
QUICK = {"sim_duration_s": "0.3", "sim_queue_s": "0.05", "sim_outcome": "completed"}


def start(backend: str, tools: list[str], deadline_s: float | None = None, **sim: str) -> Run:
    run = create_run(
        "What is 2 + 3?",
        backend=backend,
        tools=tools,
        deadline_s=deadline_s,
        metadata={**QUICK, **sim},
    )
    start_run.delay(run.pk)
    return run


def calls(run: Run) -> list[ToolCall]:
    return list(run.tool_calls.order_by("round", "id"))


def transitions(run: Run) -> list[tuple[str, str, str]]:
    return list(run.events.values_list("from_status", "to_status", "source"))


def assert_each_output_sent_once(simulator, run: Run, answered: list[ToolCall]) -> None:
    """Counted on the server's side: every answered call reached it once, nothing else did."""
    if run.backend == "assistants":
        # One submit_tool_outputs call per round carries the round's outputs (the simulator has
        # one call per round); a second submission of a call would be one call more (and a 400).
        submits = simulator.stats()["objects"][run.remote_id]["submit_tool_outputs"]
        assert submits == len({c.round for c in answered})
    else:
        # Each round's outputs start a new response in the conversation: count them there.
        items = get_client().conversations.items.list(run.thread.remote_id, limit=100)
        sent = Counter(i.call_id for i in items.data if i.type == "function_call_output")
        assert sent == {c.call_id: 1 for c in answered}


def test_two_tool_rounds_then_completed(worker, simulator, wait_terminal, api_backend):
    run = start(api_backend, ["add"], sim_tool_rounds="2", sim_tool_args='{"a": 2, "b": 3}')
    run = wait_terminal(run.pk, timeout=30)

    assert run.status == "completed", run.last_error
    answered = calls(run)
    assert [(c.round, c.name, c.output, c.state) for c in answered] == [
        (1, "add", "5", "submitted"),
        (2, "add", "5", "submitted"),
    ]
    assert all(c.started_at and c.finished_at and c.submitted_at for c in answered)
    # Each round: a poll sees requires_action, then the tool loop answers and the run goes on
    # (to queued or in_progress: whatever the submission's answer says).
    waits = [(f, t, s) for f, t, s in transitions(run) if "requires_action" in (f, t)]
    assert [(t, s) for f, t, s in waits] == [
        ("requires_action", "poll"),
        (waits[1][1], "tool"),
        ("requires_action", "poll"),
        (waits[3][1], "tool"),
    ]
    assert_each_output_sent_once(simulator, run, answered)


def test_a_tool_that_raises_sends_the_error_to_the_model(
    worker, simulator, wait_terminal, api_backend, register_tool
):
    def explode() -> str:
        raise ValueError("boom")

    register_tool(explode)
    run = wait_terminal(start(api_backend, ["explode"], sim_tool_rounds="1").pk, timeout=30)

    assert run.status == "completed"
    (call,) = calls(run)
    assert call.state == "submitted"
    # The model reads which tool failed and how; operators keep the message and the traceback.
    assert call.output == '{"error": "tool explode failed: ValueError"}'
    assert call.error.startswith("explode raised ValueError: boom\n\nTraceback")


def test_a_tool_that_times_out_is_abandoned_not_waited_for(
    worker, simulator, wait_terminal, api_backend, register_tool
):
    release, returned = threading.Event(), threading.Event()

    def hang() -> str:
        release.wait(60)  # released by the test once the run is over
        returned.set()
        return "too late"

    register_tool(hang, timeout_s=0.3)
    try:
        run = wait_terminal(start(api_backend, ["hang"], sim_tool_rounds="1").pk, timeout=30)
        tool_still_running = not returned.is_set()
    finally:
        release.set()

    assert run.status == "completed"
    assert tool_still_running  # the run went on without it: abandoned, not waited for
    (call,) = calls(run)
    assert call.error == "hang did not finish within 0.3 s"


def test_an_unknown_tool_name_gets_an_error_output(worker, simulator, wait_terminal, api_backend):
    run = start(api_backend, ["add"], sim_tool_rounds="1", sim_tool_name="launch_rockets")
    run = wait_terminal(run.pk, timeout=30)

    assert run.status == "completed"
    (call,) = calls(run)
    assert call.name == "launch_rockets"
    assert call.error == "unknown tool 'launch_rockets'; this run offers: add"


def test_bad_json_arguments_get_an_error_output(worker, simulator, wait_terminal, api_backend):
    run = wait_terminal(start(api_backend, ["add"], sim_tool_rounds="1", sim_bad_args="1").pk, 30)

    assert run.status == "completed"
    (call,) = calls(run)
    assert call.error.startswith("arguments for add are not valid JSON")
    assert call.state == "submitted"


def test_a_run_still_reported_requires_action_after_submitting_is_not_submitted_twice(
    worker, simulator, wait_terminal, api_backend
):
    # Assistants keeps answering requires_action, with the same call ids, for 1 s after each
    # submit: several polls see that. (Responses has no such lag: a new response carries on.)
    run = start(
        api_backend,
        ["add"],
        sim_tool_rounds="2",
        sim_submit_lag_s="1.0",
        sim_tool_args='{"a": 1, "b": 1}',
    )
    run = wait_terminal(run.pk, timeout=30)

    assert run.status == "completed"
    answered = calls(run)
    assert len(answered) == 2
    assert_each_output_sent_once(simulator, run, answered)
    # The stale answers were recognised as old: the run never went back to requires_action.
    assert [t for f, t, s in transitions(run)].count("requires_action") == 2


def test_a_manual_tool_waits_for_the_python_api(
    worker, simulator, wait_until, wait_terminal, api_backend, register_tool
):
    register_tool(
        name="ask_human",
        manual=True,
        description="Ask a person.",
        parameters={"type": "object", "properties": {"question": {"type": "string"}}},
    )
    run = start(api_backend, ["ask_human"], sim_tool_rounds="1")
    run = wait_until(run.pk, lambda r: r.status == "requires_action")
    (call,) = owed_tool_calls(run)
    assert (call.name, call.state) == ("ask_human", "manual")

    time.sleep(1.0)  # nobody answers: the run just waits, nothing is sent
    run.refresh_from_db()
    assert run.status == "requires_action"
    assert_each_output_sent_once(simulator, run, [])

    answered = submit_tool_output(run, call.call_id, "Yes, go ahead.")
    assert (answered.state, answered.output) == ("succeeded", "Yes, go ahead.")
    run = wait_terminal(run.pk, timeout=30)

    assert run.status == "completed"
    call.refresh_from_db()
    assert (call.state, call.output) == ("submitted", "Yes, go ahead.")
    assert_each_output_sent_once(simulator, run, [call])
    with pytest.raises(ValidationError, match="not waiting for tool outputs"):
        submit_tool_output(run, call.call_id, "again")


def test_a_run_waiting_for_a_manual_tool_can_be_cancelled(
    worker, simulator, wait_until, wait_terminal, api_backend, register_tool
):
    """On Responses the response already ended asking for the tool, so OpenAI's cancel answers
    that it completed: the cancel then ends the run here. On Assistants the remote run waits
    too, and OpenAI cancels it."""
    register_tool(name="ask_human", manual=True, description="Ask a person.")
    run = start(api_backend, ["ask_human"], deadline_s=120.0, sim_tool_rounds="1")
    run = wait_until(run.pk, lambda r: r.status == "requires_action")

    assert cancel_run(run, by="test") == "cancelling"
    run = wait_terminal(run.pk, timeout=20)

    assert run.status == "cancelled"
    assert ("requires_action", "cancelling", "user") in transitions(run)
    (call,) = calls(run)
    if api_backend == "responses":
        assert ("cancelling", "cancelled", "poll") in transitions(run)
        assert (call.state, call.error) == ("error", "not run: the run was cancelled")
    with pytest.raises(ValidationError, match="not waiting for tool outputs"):
        submit_tool_output(run, call.call_id, "too late")


def test_a_run_left_in_requires_action_expires_with_a_clear_error(
    worker, simulator, wait_terminal, api_backend, register_tool
):
    register_tool(name="ask_human", manual=True, description="Ask a person.")
    run = start(api_backend, ["ask_human"], deadline_s=2.0, sim_tool_rounds="1")
    run = wait_terminal(run.pk, timeout=15)

    assert run.status == "expired"
    assert run.last_error_code == "deadline_exceeded"
    (call,) = calls(run)
    assert run.last_error.startswith(
        "The run waited for tool outputs past its deadline of 2 s; "
        f"still owed: ask_human ({call.call_id}, manual)."
    )
    assert call.state == "manual"
    expired = run.events.get(to_status="expired")
    assert expired.detail["owed_tool_calls"] == [call.call_id]
    if api_backend == "assistants":  # the remote run was waiting too: it is released
        assert simulator.stats()["objects"][run.remote_id]["cancel"] == 1


def test_too_many_tool_rounds_fail_the_run(worker, simulator, wait_terminal, api_backend, settings):
    settings.RUNS_MAX_TOOL_ROUNDS = 1
    run = start(api_backend, ["add"], sim_tool_rounds="3", sim_tool_args='{"a": 1, "b": 2}')
    run = wait_terminal(run.pk, timeout=30)

    assert run.status == "failed"
    assert run.last_error_code == "tool_rounds_exceeded"
    assert "after 1 rounds (RUNS_MAX_TOOL_ROUNDS = 1)" in run.last_error
    assert [(c.round, c.state) for c in calls(run)] == [(1, "submitted"), (2, "error")]


def outputs_received(run: Run) -> dict[str, str]:
    """The function_call_output items the simulator holds for a Responses run, by call id."""
    items = get_client().conversations.items.list(run.thread.remote_id, limit=100)
    return {i.call_id: i.output for i in items.data if i.type == "function_call_output"}


def test_bad_arguments_never_reach_the_tool_and_a_long_output_is_capped(
    worker, simulator, wait_terminal, register_tool, settings
):
    """Two runs side by side (Responses): the model sends ``{"n": "three"}`` to ``count(n: int)``,
    and ``dump()`` returns 5000 bytes where 1000 are allowed."""
    settings.RUNS_TOOL_OUTPUT_MAX_BYTES = 1000
    reached: list[object] = []

    def count(n: int) -> str:
        reached.append(n)
        return "counted"

    def dump() -> str:
        return "x" * 5000

    register_tool(count)
    register_tool(dump)
    invalid = start("responses", ["count"], sim_tool_rounds="1", sim_tool_args='{"n": "three"}')
    oversized = start("responses", ["dump"], sim_tool_rounds="1")
    invalid, oversized = (wait_terminal(r.pk, timeout=30) for r in (invalid, oversized))

    assert (invalid.status, oversized.status) == ("completed", "completed")
    assert reached == []  # the function was never called
    (refused,) = calls(invalid)
    assert (refused.state, refused.error) == (
        "submitted",
        "invalid arguments for count: n: Input should be a valid integer",
    )
    assert outputs_received(invalid) == {refused.call_id: json.dumps({"error": refused.error})}

    (capped,) = calls(oversized)
    sent = outputs_received(oversized)[capped.call_id]
    assert sent == capped.output  # what the model got is what the row says it got
    assert sent.endswith("…[truncated: 5000 bytes, limit 1000]")
    assert sent.startswith("xxx") and len(sent.encode()) == 1000
    assert (capped.state, capped.error) == ("submitted", "")  # a success, only shorter


def test_a_run_with_tool_rounds_costs_every_response_it_made(
    worker, simulator, wait_terminal, register_tool
):
    """On Responses each round is a response with usage of its own: the response that asked for
    the tool, then the one the outputs started. The run's usage and cost cover all three, and
    ``round_usage`` keeps the two earlier ones by response id (review 2, finding 3)."""

    def add(a: int, b: int) -> str:
        return str(a + b)

    register_tool(add, name="add_for_cost")
    run = start(
        "responses", ["add_for_cost"], sim_tool_rounds="2", sim_tool_args='{"a": 2, "b": 3}'
    )
    run = wait_terminal(run.pk, timeout=30)
    assert run.status == "completed", run.last_error

    responses = get_client().responses
    earlier = {rid: responses.retrieve(rid).usage.model_dump() for rid in run.round_usage}
    assert len(earlier) == 2 and run.remote_id not in earlier
    assert run.round_usage == earlier  # each as OpenAI reported it, counted once
    last = responses.retrieve(run.remote_id).usage.model_dump()
    every = [*earlier.values(), last]
    assert run.usage["input_tokens"] == sum(u["input_tokens"] for u in every)
    assert run.usage["output_tokens"] == sum(u["output_tokens"] for u in every)
    assert run.cost == pricing.cost_of(run.model, run.usage, run.mode)
    assert run.cost > pricing.cost_of(run.model, last, run.mode)  # not the last response alone
