"""Recording a verified webhook delivery: parse the body, store it once by its ``webhook-id``.

OpenAI delivers at least once and may send two copies at the same moment; the unique
``webhook-id`` makes the second a no-op (dj-stripe's pattern: a unique constraint plus an
``IntegrityError`` fallback that reads the row the concurrent request just created).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError, transaction

from ..models import WebhookEvent


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


def record(webhook_id: str, payload: dict[str, Any]) -> tuple[WebhookEvent, bool]:
    """Store a verified delivery keyed by its ``webhook-id``; (event, created).

    A concurrent copy of the same delivery loses the unique constraint and reads the winner's
    row instead (dj-stripe's pattern), so both copies answer the same way.
    """
    event_id, event_type, object_id, created_at = parse(payload)
    try:
        with transaction.atomic():
            event = WebhookEvent.objects.create(
                webhook_id=webhook_id,
                event_id=event_id[:128],
                type=event_type[:64],
                object_id=object_id[:128],
                payload=payload,
                created_at_remote=created_at,
            )
        return event, True
    except IntegrityError:
        return WebhookEvent.objects.get(webhook_id=webhook_id), False
