"""Representative answers validated against the vendored OpenAI schemas."""

from __future__ import annotations

import time
from typing import Any

import pytest
from openai import OpenAI

from runs_simulator import schemas

from .helpers import assert_schema

pytest.importorskip("jsonschema")


def _json(raw: Any) -> Any:
    return raw.http_response.json()


def test_vendored_subset_is_complete() -> None:
    names = set(schemas.names())
    assert {
        "Response",
        "RunObject",
        "ThreadObject",
        "MessageObject",
        "ErrorResponse",
        "ConversationResource",
        "ConversationItemList",
    } <= names
    assert set(schemas.document()["webhooks"]) == {
        "response_completed",
        "response_failed",
        "response_cancelled",
        "response_incomplete",
    }


@pytest.mark.parametrize("outcome", ["completed", "failed", "incomplete", "cancelled"])
def test_response_payloads_match_schema(client: OpenAI, outcome: str) -> None:
    created = client.responses.with_raw_response.create(
        model="gpt-4o",
        input="hello",
        background=True,
        metadata={"sim_duration_s": "0.1", "sim_outcome": outcome},
    )
    assert_schema("Response", _json(created))
    time.sleep(0.15)
    payload = _json(client.responses.with_raw_response.retrieve(created.parse().id))
    assert payload["status"] == outcome
    assert_schema("Response", payload)


def test_tool_call_response_and_conversation_match_schema(client: OpenAI) -> None:
    conv = client.conversations.with_raw_response.create(
        items=[{"type": "message", "role": "user", "content": "hi"}]
    )
    assert_schema("ConversationResource", _json(conv))
    conv_id = conv.parse().id
    raw = client.responses.with_raw_response.create(
        model="gpt-4o",
        input="x",
        conversation=conv_id,
        tools=[{"type": "function", "name": "f", "parameters": {"type": "object"}}],  # type: ignore[list-item]
        metadata={"sim_tool_rounds": "1"},
    )
    payload = _json(raw)
    assert payload["output"][0]["type"] == "function_call"
    assert_schema("Response", payload)
    call_id = payload["output"][0]["call_id"]
    client.responses.create(
        model="gpt-4o",
        conversation=conv_id,
        input=[{"type": "function_call_output", "call_id": call_id, "output": "ok"}],
    )
    assert_schema(
        "ConversationItemList", _json(client.conversations.items.with_raw_response.list(conv_id))
    )


def test_error_bodies_match_schema(client: OpenAI) -> None:
    import openai

    with pytest.raises(openai.NotFoundError) as info:
        client.responses.retrieve("resp_missing")
    assert_schema("ErrorResponse", info.value.response.json())
