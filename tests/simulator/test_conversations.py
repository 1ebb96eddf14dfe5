"""Conversations: items in, responses appending their output, list pages."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI
from openai.types.conversations import Conversation, ConversationItemList

from runs_simulator.testing import RunningSimulator

from .helpers import item_text, strict, wait_for


def test_create_add_list_and_response_output_appended(
    client: OpenAI, sim: RunningSimulator
) -> None:
    conv = client.conversations.create(
        metadata={"topic": "demo"}, items=[{"type": "message", "role": "user", "content": "first"}]
    )
    assert conv.object == "conversation" and conv.metadata == {"topic": "demo"}
    assert client.conversations.retrieve(conv.id).id == conv.id
    added = client.conversations.items.create(
        conv.id,
        items=[
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "two"}]},
            {"type": "message", "role": "assistant", "content": "three"},
        ],
    )
    assert added.object == "list" and len(added.data) == 2
    assert added.first_id == added.data[0].id and added.last_id == added.data[1].id

    response = client.responses.create(
        model="gpt-4o",
        input="four",
        conversation=conv.id,
        background=True,
        # Long enough that the list below comes first even on a slow first request.
        metadata={"sim_duration_s": "2", "sim_outcome": "completed"},
    )
    assert response.conversation is not None and response.conversation.id == conv.id
    listed = client.conversations.items.list(conv.id, order="asc")
    texts = [item_text(item) for item in listed.data]
    assert texts == ["first", "two", "three", "four"]  # the answer is not there yet...
    wait_for(  # ...until the response ends
        lambda: client.responses.retrieve(response.id).status,
        lambda status: status == "completed",
        timeout=10,
    )
    raw = client.conversations.items.with_raw_response.list(conv.id, order="asc")
    page = strict(ConversationItemList, raw.http_response.json())
    assert [item.type for item in page.data][-1] == "message"
    assert page.data[-1].model_dump()["role"] == "assistant"
    assert item_text(page.data[-1]) == "Simulated answer to: four"
    assert page.has_more is False and page.first_id == page.data[0].id
    strict(
        Conversation, client.conversations.with_raw_response.retrieve(conv.id).http_response.json()
    )

    stats = sim.stats()
    assert stats["calls"]["conversations.items.create"] == 1
    assert stats["calls"]["conversations.items.list"] == 2
    assert stats["objects"][conv.id]["items_list"] == 2


def test_pagination_desc_default_and_after_cursor(client: OpenAI) -> None:
    conv = client.conversations.create(
        items=[{"type": "message", "role": "user", "content": str(n)} for n in range(5)]
    )
    first = client.conversations.items.list(conv.id, limit=2)
    assert [item_text(i) for i in first.data] == ["4", "3"]
    assert first.has_more is True
    assert first.last_id is not None
    second = client.conversations.items.list(conv.id, limit=2, after=first.last_id)
    assert [item_text(i) for i in second.data] == ["2", "1"]
    everything = [
        item_text(i) for i in client.conversations.items.list(conv.id, limit=2, order="asc")
    ]
    assert everything == ["0", "1", "2", "3", "4"]


def test_unknown_conversation_and_exclusive_params(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.list("conv_nope")
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="gpt-4o", input="x", conversation="conv_nope")
    conv = client.conversations.create()
    first = client.responses.create(model="gpt-4o", input="x")
    with pytest.raises(openai.BadRequestError, match="Mutually exclusive"):
        client.responses.create(
            model="gpt-4o", input="y", conversation=conv.id, previous_response_id=first.id
        )
