"""Responses tool rounds: function_call outputs until N rounds were answered."""

from __future__ import annotations

import json

from openai import OpenAI
from openai.types.responses import (
    FunctionToolParam,
    Response,
    ResponseFunctionToolCall,
    ResponseInputItemParam,
)
from openai.types.responses.response_input_param import FunctionCallOutput

from runs_simulator.testing import RunningSimulator

from .helpers import strict

TOOLS: list[FunctionToolParam] = [
    {
        "type": "function",
        "strict": False,
        "name": "lookup",
        "description": "Look something up",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
    }
]


def _calls(response: Response) -> list[ResponseFunctionToolCall]:
    return [item for item in response.output if isinstance(item, ResponseFunctionToolCall)]


def _answer(call: ResponseFunctionToolCall) -> list[ResponseInputItemParam]:
    output: FunctionCallOutput = {
        "type": "function_call_output",
        "call_id": call.call_id,
        "output": "42",
    }
    return [output]


def test_two_rounds_chained_by_previous_response_id(client: OpenAI) -> None:
    first = client.responses.create(
        model="gpt-4o",
        input="weather?",
        tools=TOOLS,
        metadata={
            "sim_tool_rounds": "2",
            "sim_tool_args": '{"q": "paris"}',
            "sim_outcome": "completed",
            "run_id": "r1",
        },
    )
    assert first.status == "completed"
    (call,) = _calls(first)
    assert call.name == "lookup" and json.loads(call.arguments) == {"q": "paris"}
    assert call.call_id.startswith("call_") and first.output_text == ""
    second = client.responses.create(
        model="gpt-4o",
        input=_answer(call),
        previous_response_id=first.id,
        tools=TOOLS,
    )
    (call2,) = _calls(second)
    assert call2.call_id != call.call_id
    third = client.responses.create(
        model="gpt-4o",
        input=_answer(call2),
        previous_response_id=second.id,
        tools=TOOLS,
    )
    assert _calls(third) == [] and third.output_text.startswith("Simulated answer to:")
    strict(Response, client.responses.with_raw_response.retrieve(first.id).http_response.json())


def test_rounds_in_a_conversation_with_bad_args_and_named_tool(client: OpenAI) -> None:
    conv = client.conversations.create()
    meta = {
        "sim_tool_rounds": "1",
        "sim_tool_name": "other",
        "sim_bad_args": "1",
        "sim_duration_s": "0.05",
    }
    first = client.responses.create(
        model="gpt-4o",
        input="go",
        tools=TOOLS,
        conversation=conv.id,
        metadata=meta,
        background=True,
    )
    assert first.status == "queued"
    import time

    time.sleep(0.1)
    done = client.responses.retrieve(first.id)
    (call,) = _calls(done)
    assert call.name == "other"
    try:
        json.loads(call.arguments)
    except ValueError:
        pass
    else:  # pragma: no cover - the knob must produce invalid JSON
        raise AssertionError("sim_bad_args should send invalid JSON arguments")
    follow = client.responses.create(
        model="gpt-4o",
        input=_answer(call),
        conversation=conv.id,
    )
    assert _calls(follow) == [] and follow.status == "completed"
    types = [item.type for item in client.conversations.items.list(conv.id, order="asc")]
    assert types == ["message", "function_call", "function_call_output", "message"]


def test_stats_count_the_outputs_each_call_received(client: OpenAI, sim: RunningSimulator) -> None:
    """A client that sends the same call's output in two creates answered it twice: visible."""
    first = client.responses.create(
        model="gpt-4o", input="go", tools=TOOLS, metadata={"sim_tool_rounds": "1"}
    )
    (call,) = _calls(first)
    assert sim.stats(objects=False)["tool_outputs_by_call_id"] == {}
    client.responses.create(
        model="gpt-4o", input=_answer(call), previous_response_id=first.id, tools=TOOLS
    )
    assert sim.stats(objects=False)["tool_outputs_by_call_id"] == {call.call_id: 1}
    # A retry after a lost answer: the server takes it and the model reads the output again.
    client.responses.create(
        model="gpt-4o", input=_answer(call), previous_response_id=first.id, tools=TOOLS
    )
    assert sim.stats(objects=False)["tool_outputs_by_call_id"] == {call.call_id: 2}
