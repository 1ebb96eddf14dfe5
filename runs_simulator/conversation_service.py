"""Conversations endpoints' logic (create, retrieve, add items, list items).

Why separate from routing: the Responses service also appends to conversations, and the
lazy "append output once the response is terminal" step must run before any listing.
"""

from __future__ import annotations

from typing import Any

from . import validation
from .conversations import Conversation, added_page, list_page
from .errors import bad_request, not_found
from .ids import hex_id
from .items import normalize_input
from .state import SimState


def get_conversation(state: SimState, conversation_id: str) -> Conversation:
    """Look up a conversation or answer 404 like the API."""
    conversation = state.stores.conversations.get(conversation_id)
    if conversation is None:
        raise not_found(f"Conversation with id '{conversation_id}' not found.")
    return conversation


def settle(state: SimState, conversation: Conversation) -> None:
    """Append the output of responses that became terminal since the last look."""
    if not conversation.pending_responses:
        return
    now = state.now()
    still_pending: list[str] = []
    for response_id in conversation.pending_responses:
        record = state.stores.responses.get(response_id)
        if record is None:
            continue
        if record.is_terminal(now):
            if not record.appended:
                conversation.append(record.visible_output(now))
                record.appended = True
        else:
            still_pending.append(response_id)
    conversation.pending_responses = still_pending


def create(state: SimState, body: dict[str, Any]) -> Conversation:
    """``POST /v1/conversations`` with optional ``items`` and ``metadata``."""
    metadata = validation.metadata(body.get("metadata"))
    items = normalize_input(state.rng, body.get("items"))
    if len(items) > 20:
        raise bad_request("Invalid 'items': array too long. Expected at most 20 items.", "items")
    now = state.now()
    conversation = Conversation(id=hex_id(state.rng, "conv"), created=now, metadata=metadata)
    conversation.append(items)
    state.stores.conversations[conversation.id] = conversation
    state.stats.register(conversation.id, "conversation", now, metadata)
    return conversation


def add_items(state: SimState, conversation_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/conversations/{id}/items``: answers the page of added items."""
    conversation = get_conversation(state, conversation_id)
    if "items" not in body or not isinstance(body["items"], list):
        raise bad_request("Missing required parameter: 'items'.", "items")
    items = normalize_input(state.rng, body["items"])
    if len(items) > 20:
        raise bad_request("Invalid 'items': array too long. Expected at most 20 items.", "items")
    settle(state, conversation)
    conversation.append(items)
    state.stats.touch(conversation_id, "items_create")
    return added_page(items)


def list_items(state: SimState, conversation_id: str, query: dict[str, str]) -> dict[str, Any]:
    """``GET /v1/conversations/{id}/items`` with ``limit``, ``order`` and ``after``."""
    conversation = get_conversation(state, conversation_id)
    settle(state, conversation)
    state.stats.touch(conversation_id, "items_list")
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        raise bad_request("Invalid 'limit': expected an integer.", "limit") from None
    return list_page(
        conversation.items,
        conversation.positions,
        limit=limit,
        order=query.get("order", "desc"),
        after=query.get("after"),
    )
