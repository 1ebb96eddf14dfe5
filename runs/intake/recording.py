"""Recording a verified webhook delivery: parse the body, store it once by its ``webhook-id``.

OpenAI delivers at least once and may send two copies at the same moment; the unique
``webhook-id`` makes the second a no-op. The store is one insert-or-ignore that also settles the
event against its run (``runs.engine.events.record``): no transaction, no ``IntegrityError`` to
catch, and the copy that loses reads the winner's row.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..engine import events


class MalformedEvent(ValueError):
    """A correctly signed body that is not an OpenAI event."""


def parse(payload: Any) -> tuple[str, str, str, datetime | None]:
    """(event id, type, object id, created at) from an event body, or ``MalformedEvent``."""
    if not isinstance(payload, dict):
        raise MalformedEvent("the event body must be a JSON object")
    event_type = payload.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise MalformedEvent("the event has no 'type'")
    data = payload.get("data")
    object_id = data.get("id", "") if isinstance(data, dict) else ""
    if not isinstance(object_id, str):
        raise MalformedEvent("'data.id' must be a string")
    created = payload.get("created_at")
    created_at = (
        datetime.fromtimestamp(created, UTC)
        if isinstance(created, int | float) and 0 < created < 1e11
        else None
    )
    event_id = payload.get("id", "")
    return (event_id if isinstance(event_id, str) else ""), event_type, object_id, created_at


def record(webhook_id: str, payload: dict[str, Any]) -> events.Recorded:
    """Store a verified delivery keyed by its ``webhook-id``; (event, created, ticket).

    A fresh event comes back already settled (``applied``, ``stale``, ``unknown_object`` or
    ``ignored``), with the ticket its insert took for the wake where it took one;
    ``events.process`` then wakes its run. A second copy, concurrent or late, gets the stored
    row and ``created`` False.
    """
    event_id, event_type, object_id, created_at = parse(payload)
    return events.record(
        webhook_id,
        event_id=event_id,
        event_type=event_type,
        object_id=object_id,
        payload=payload,
        created_at=created_at,
    )
