"""Recording and applying OpenAI webhook events: idempotent, race-free, no API calls.

An event carries only the object id, so applying it means *waking* the run: take a fresh poll
ticket and enqueue an immediate poll, which retrieves once. The poll already waiting in the queue
then finds its ticket gone and exits without calling the API. That is what makes a run tracked by
webhook cost one retrieve.

Every step that could run twice (OpenAI delivers at least once, two copies may arrive together,
the run's remote id may land while we look) is a conditional UPDATE on the event's ``outcome``,
so exactly one writer acts on each event.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from . import tracking
from .models import Run, WebhookEvent
from .status import TERMINAL

log = logging.getLogger(__name__)

Outcome = WebhookEvent.Outcome

#: The events that tell us a response reached a terminal status.
RESPONSE_TERMINAL_EVENTS = frozenset(
    {"response.completed", "response.failed", "response.cancelled", "response.incomplete"}
)


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


def process(event: WebhookEvent) -> str:
    """Act on a recorded event once; returns its outcome. Raises if the wake could not be sent
    (the event is then left ``received``, so OpenAI's retry processes it again)."""
    if event.type not in RESPONSE_TERMINAL_EVENTS:
        _settle(event, Outcome.RECEIVED, Outcome.IGNORED)
        return Outcome.IGNORED
    run = _run_for(event.object_id)
    if run is None:
        # Not ours, or ours before start_run saved the remote id: keep it for that moment, then
        # look once more so a remote id saved in between is not missed (start_run looks too).
        _settle(event, Outcome.RECEIVED, Outcome.UNKNOWN_OBJECT)
        run = _run_for(event.object_id)
        if run is None:
            return Outcome.UNKNOWN_OBJECT
        return _apply(event, run, Outcome.UNKNOWN_OBJECT)
    return _apply(event, run, Outcome.RECEIVED)


def apply_waiting(run_id: int, remote_id: str) -> int:
    """Apply events that arrived before ``remote_id`` was saved on run ``run_id``."""
    applied = 0
    for event in WebhookEvent.objects.filter(object_id=remote_id, outcome=Outcome.UNKNOWN_OBJECT):
        run = Run.objects.get(pk=run_id)
        if _apply(event, run, Outcome.UNKNOWN_OBJECT) == Outcome.APPLIED:
            applied += 1
    return applied


def _run_for(object_id: str) -> Run | None:
    if not object_id:
        return None
    return Run.objects.filter(remote_id=object_id).only("pk", "status", "poll_generation").first()


def _settle(event: WebhookEvent, expected: str, outcome: str, run: Run | None = None) -> bool:
    """Move the event's outcome from ``expected`` to ``outcome``; False if someone else did."""
    done = WebhookEvent.objects.filter(pk=event.pk, outcome=expected).update(
        outcome=outcome, run=run, processed_at=timezone.now()
    )
    if done:
        event.outcome = outcome
    return bool(done)


def _apply(event: WebhookEvent, run: Run, expected: str) -> str:
    if run.status in TERMINAL:
        _settle(event, expected, Outcome.STALE, run)
        return Outcome.STALE
    if not _settle(event, expected, Outcome.APPLIED, run):
        return WebhookEvent.objects.filter(pk=event.pk).values_list("outcome", flat=True).get()
    try:
        tracking.wake(run.pk, generation=run.poll_generation, webhook_events=1)
    except Exception:
        # The broker is down: un-settle so a redelivery (OpenAI retries non-2xx) tries again.
        WebhookEvent.objects.filter(pk=event.pk).update(outcome=expected, processed_at=None)
        Run.objects.filter(pk=run.pk, webhook_events__gt=0).update(
            webhook_events=F("webhook_events") - 1
        )
        raise
    log.info("run %s: woken by %s (%s)", run.pk, event.type, event.webhook_id)
    return Outcome.APPLIED
