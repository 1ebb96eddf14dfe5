"""Assistants runs through the real SDK: tool calls, submit lag, double submit, expiry."""

from __future__ import annotations

import time
from functools import partial

import openai
import pytest
from openai import OpenAI
from openai.types.beta import FunctionToolParam, Thread
from openai.types.beta.threads import Message, Run

from runs_simulator.testing import RunningSimulator

from .helpers import assert_schema, strict, wait_for

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TOOLS: list[FunctionToolParam] = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
]


def _thread(client: OpenAI) -> Thread:
    return client.beta.threads.create(messages=[{"role": "user", "content": "hello"}])


def _run(client: OpenAI, thread_id: str, **metadata: str) -> Run:
    meta = {"sim_duration_s": "0.2", "sim_queue_s": "0.05", **metadata}
    return client.beta.threads.runs.create(
        thread_id=thread_id, assistant_id="asst_sim", tools=TOOLS, metadata=meta
    )


def _get(client: OpenAI, run: Run) -> Run:
    return client.beta.threads.runs.retrieve(run_id=run.id, thread_id=run.thread_id)


def _raw_run(client: OpenAI, run: Run) -> dict[str, object]:
    raw = client.beta.threads.runs.with_raw_response.retrieve(
        run_id=run.id, thread_id=run.thread_id
    )
    payload: dict[str, object] = raw.http_response.json()
    return payload


def test_tool_rounds_with_submit_lag_and_completion(client: OpenAI, sim: RunningSimulator) -> None:
    thread = _thread(client)
    run = _run(
        client,
        thread.id,
        sim_tool_rounds="2",
        sim_submit_lag_s="0.3",
        sim_tool_args='{"q": "x"}',
        run_id="app-run-1",
    )
    assert run.status == "queued" and run.expires_at is not None and run.usage is None
    for round_number in (1, 2):
        run = wait_for(partial(_get, client, run), lambda r: r.status == "requires_action")
        assert run.required_action is not None
        (call,) = run.required_action.submit_tool_outputs.tool_calls
        assert call.function.name == "lookup" and call.function.arguments == '{"q": "x"}'
        payload = _raw_run(client, run)
        strict(Run, payload)
        assert_schema("RunObject", payload)
        after = client.beta.threads.runs.submit_tool_outputs(
            run_id=run.id,
            thread_id=thread.id,
            tool_outputs=[{"tool_call_id": call.id, "output": f"result {round_number}"}],
        )
        # The real API keeps reporting requires_action (same calls) right after a submit.
        assert after.status == "requires_action"
        assert after.required_action is not None
        assert after.required_action.submit_tool_outputs.tool_calls[0].id == call.id
        with pytest.raises(openai.BadRequestError, match="already been submitted"):
            client.beta.threads.runs.submit_tool_outputs(
                run_id=run.id,
                thread_id=thread.id,
                tool_outputs=[{"tool_call_id": call.id, "output": "again"}],
            )
        time.sleep(0.3)
        assert _get(client, run).status in ("in_progress", "requires_action", "completed")
    final = wait_for(lambda: _get(client, run), lambda r: r.status == "completed")
    assert final.completed_at is not None and final.usage is not None
    assert final.required_action is None and final.expires_at is None
    strict(Run, _raw_run(client, final))
    messages = client.beta.threads.messages.with_raw_response.list(thread_id=thread.id)
    page = messages.http_response.json()
    assert [m["role"] for m in page["data"]] == ["assistant", "user"]
    assert page["data"][0]["run_id"] == run.id
    for message in page["data"]:
        strict(Message, message)
        assert_schema("MessageObject", message)
    stats = sim.stats()
    assert stats["objects"][run.id]["submit_tool_outputs"] == 4
    assert stats["creates_by_run_id"] == {"app-run-1": 1}
    assert stats["calls"]["threads.runs.submit_tool_outputs"] == 4


def test_stats_count_every_submit_naming_a_call_even_a_refused_one(
    client: OpenAI, sim: RunningSimulator
) -> None:
    """The API refuses a repeat, but the client still answered twice: the count says so."""
    thread = _thread(client)
    run = _run(client, thread.id, sim_tool_rounds="1")
    run = wait_for(partial(_get, client, run), lambda r: r.status == "requires_action")
    assert run.required_action is not None
    (call,) = run.required_action.submit_tool_outputs.tool_calls
    outputs = [{"tool_call_id": call.id, "output": "42"}]
    client.beta.threads.runs.submit_tool_outputs(
        run_id=run.id, thread_id=thread.id, tool_outputs=outputs
    )
    assert sim.stats(objects=False)["tool_outputs_by_call_id"] == {call.id: 1}
    with pytest.raises(openai.BadRequestError, match="already been submitted"):
        client.beta.threads.runs.submit_tool_outputs(
            run_id=run.id, thread_id=thread.id, tool_outputs=outputs
        )
    assert sim.stats(objects=False)["tool_outputs_by_call_id"] == {call.id: 2}


def test_expiry_when_outputs_never_arrive(client: OpenAI) -> None:
    thread = _thread(client)
    run = _run(client, thread.id, sim_tool_rounds="1", sim_expires_s="0.5")
    assert wait_for(lambda: _get(client, run), lambda r: r.status == "requires_action")
    expired = wait_for(lambda: _get(client, run), lambda r: r.status == "expired")
    assert expired.required_action is None
    with pytest.raises(openai.BadRequestError, match='status "expired"'):
        client.beta.threads.runs.submit_tool_outputs(
            run_id=run.id,
            thread_id=thread.id,
            tool_outputs=[{"tool_call_id": "call_x", "output": "late"}],
        )
    assert_schema("RunObject", _raw_run(client, expired))


def test_wrong_call_ids_are_rejected(client: OpenAI) -> None:
    thread = _thread(client)
    run = _run(client, thread.id, sim_tool_rounds="1")
    wait_for(lambda: _get(client, run), lambda r: r.status == "requires_action")
    with pytest.raises(openai.BadRequestError, match="Expected tool outputs"):
        client.beta.threads.runs.submit_tool_outputs(
            run_id=run.id,
            thread_id=thread.id,
            tool_outputs=[{"tool_call_id": "call_other", "output": "x"}],
        )


def test_cancel_goes_through_cancelling(client: OpenAI, sim: RunningSimulator) -> None:
    sim.configure(run_cancel_lag_s=0.2)
    thread = _thread(client)
    run = _run(client, thread.id, sim_duration_s="5")
    with pytest.raises(openai.BadRequestError, match="already has an active run"):
        _run(client, thread.id)
    cancelling = client.beta.threads.runs.cancel(run_id=run.id, thread_id=thread.id)
    assert cancelling.status == "cancelling"
    with pytest.raises(openai.BadRequestError, match="Cannot cancel run"):
        client.beta.threads.runs.cancel(run_id=run.id, thread_id=thread.id)
    cancelled = wait_for(lambda: _get(client, run), lambda r: r.status == "cancelled")
    assert cancelled.cancelled_at is not None
    assert_schema("RunObject", _raw_run(client, cancelled))
    assert sim.stats()["objects"][run.id]["cancel"] == 2


@pytest.mark.parametrize("outcome", ["failed", "incomplete", "cancelled", "expired"])
def test_run_outcomes(client: OpenAI, outcome: str) -> None:
    thread = _thread(client)
    run = _run(client, thread.id, sim_duration_s="0.1", sim_outcome=outcome)
    final = wait_for(lambda: _get(client, run), lambda r: r.status == outcome)
    payload = _raw_run(client, final)
    strict(Run, payload)
    assert_schema("RunObject", payload)
    if outcome == "failed":
        assert final.last_error is not None and final.last_error.code == "server_error"
        assert final.failed_at is not None
    if outcome == "incomplete":
        assert final.incomplete_details is not None


def test_threads_messages_and_not_found(client: OpenAI) -> None:
    thread = _thread(client)
    raw = client.beta.threads.with_raw_response.retrieve(thread.id)
    assert_schema("ThreadObject", raw.http_response.json())
    message = client.beta.threads.messages.create(thread_id=thread.id, role="user", content="more")
    assert message.content[0].text.value == "more"  # type: ignore[union-attr]
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.retrieve("thread_missing")
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.retrieve(run_id="run_missing", thread_id=thread.id)


def test_poll_hint_and_sdk_poll_helper(client: OpenAI) -> None:
    thread = _thread(client)
    run = _run(client, thread.id, sim_duration_s="0.3")
    raw = client.beta.threads.runs.with_raw_response.retrieve(run_id=run.id, thread_id=thread.id)
    assert raw.headers.get("openai-poll-after-ms") == "250"
    final = client.beta.threads.runs.poll(run_id=run.id, thread_id=thread.id)
    assert final.status == "completed"
