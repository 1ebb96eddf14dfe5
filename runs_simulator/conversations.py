"""In-memory conversations with cursor pagination over their items.

Why: the Conversations API is the durable history our app hangs responses on; the
simulator keeps items in insertion order with an id index so ``after=`` cursors and
appends stay O(1)/O(page) even with long histories.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import bad_request, not_found
from .items import Item


@dataclass
class Conversation:
    """One conversation and its items (oldest first)."""

    id: str
    created: float
    metadata: dict[str, str]
    items: list[Item] = field(default_factory=list)
    positions: dict[str, int] = field(default_factory=dict)
    # Responses created in this conversation whose output is not appended yet.
    pending_responses: list[str] = field(default_factory=list)
    # The tool-round chain most recently started in this conversation.
    chain_id: str | None = None

    def append(self, items: list[Item]) -> None:
        """Add items at the end, indexing their ids."""
        for item in items:
            self.positions[item["id"]] = len(self.items)
            self.items.append(item)

    def render(self) -> dict[str, Any]:
        """The ``ConversationResource`` shape."""
        return {
            "id": self.id,
            "object": "conversation",
            "created_at": int(self.created),
            "metadata": self.metadata,
        }


def list_page(
    items: list[Item],
    positions: dict[str, int],
    *,
    limit: int = 20,
    order: str = "desc",
    after: str | None = None,
) -> dict[str, Any]:
    """A ``ConversationItemList`` page: ``data``, ``first_id``, ``last_id``, ``has_more``."""
    if order not in ("asc", "desc"):
        raise bad_request(f"Invalid value for 'order': {order!r}.", "order")
    if not 1 <= limit <= 100:
        raise bad_request("Invalid 'limit': integer must be between 1 and 100.", "limit")
    if order == "asc":
        start = 0
        if after is not None:
            if after not in positions:
                raise not_found(f"Item with id '{after}' not found.", "after")
            start = positions[after] + 1
        page = items[start : start + limit]
        has_more = start + limit < len(items)
    else:
        end = len(items)
        if after is not None:
            if after not in positions:
                raise not_found(f"Item with id '{after}' not found.", "after")
            end = positions[after]
        start = max(0, end - limit)
        page = list(reversed(items[start:end]))
        has_more = start > 0
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else "",
        "last_id": page[-1]["id"] if page else "",
        "has_more": has_more,
    }


def added_page(items: list[Item]) -> dict[str, Any]:
    """The list page answered by ``POST .../items`` (the added items, in order)."""
    return {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"] if items else "",
        "last_id": items[-1]["id"] if items else "",
        "has_more": False,
    }
