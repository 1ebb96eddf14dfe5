"""Recording a verified webhook delivery: parse the body, store it once by its ``webhook-id``.

OpenAI delivers at least once and may send two copies at the same moment; the unique
``webhook-id`` makes the second a no-op. The store is one insert-or-ignore that also settles the
event against its run (``runs.engine.events.record``): no transaction, no ``IntegrityError`` to
catch, and the copy that loses reads the winner's row.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from ..engine import events
from ..storable import json_problem


class MalformedEvent(ValueError):
    """A correctly signed body that is not an OpenAI event, or one we could not store."""


#: The ``webhook-id`` column's length: a longer id could not be stored (OpenAI's are ~30).
MAX_WEBHOOK_ID = 128


def load(body: bytes) -> Any:
    """The body as JSON we can store (``jsonb`` refuses NaN, infinities, a NUL, a lone
    surrogate: a signed body holding one was a 500, which OpenAI retries for days)."""
    try:
        payload = json.loads(body, parse_constant=_no_constant)
    except MalformedEvent:
        raise
    except RecursionError as exc:
        raise MalformedEvent("the body is nested too deep") from exc
    except ValueError as exc:  # not JSON, or bytes json.loads cannot decode (UTF-16/32 guesses)
        raise MalformedEvent("the body is not JSON") from exc
    try:
        json.dumps(payload, allow_nan=False)
    except (ValueError, RecursionError) as exc:  # 1e400 parses to an infinity, no constant
        raise MalformedEvent(f"the body cannot be stored as JSON: {exc}") from exc
    if problem := json_problem(payload):
        raise MalformedEvent(f"the body cannot be stored: {problem}")
    return payload


def _no_constant(name: str) -> Any:
    raise MalformedEvent(f"the body holds {name}, which JSON does not allow")


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
    if not object_id and event_type in events.ACTED_ON:
        raise MalformedEvent(f"a {event_type} event needs 'data.id'")
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
    if not 0 < len(webhook_id) <= MAX_WEBHOOK_ID:
        raise MalformedEvent(f"the webhook-id header must be 1 to {MAX_WEBHOOK_ID} characters")
    event_id, event_type, object_id, created_at = parse(payload)
    return events.record(
        webhook_id,
        event_id=event_id,
        event_type=event_type,
        object_id=object_id,
        payload=payload,
        created_at=created_at,
    )
