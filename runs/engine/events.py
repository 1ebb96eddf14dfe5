"""Applying recorded OpenAI webhook events: wake the run, idempotently, with no API call.

An event carries only the object id, so applying it means *waking* the run: a fresh poll ticket
and an immediate poll, which retrieves once; the poll already waiting finds its ticket gone and
exits without calling the API. That is what makes a run tracked by webhook cost one retrieve.

Every step that could run twice (OpenAI delivers at least once, two copies may arrive together,
the run's remote id may land while we look) is a conditional UPDATE on the event's ``outcome``,
so exactly one writer acts on each event. Recording (verify, parse, store by ``webhook-id``) is
the intake's job (``runs.intake``); this is the engine's half.
"""

from __future__ import annotations

import logging

from django.utils import timezone

from ..models import Run, WebhookEvent
from ..status import TERMINAL
from . import writer

log = logging.getLogger(__name__)

Outcome = WebhookEvent.Outcome

#: The events that tell us a response reached a terminal status.
RESPONSE_TERMINAL_EVENTS = frozenset(
    {"response.completed", "response.failed", "response.cancelled", "response.incomplete"}
)


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
        run = Run.objects.only("pk", "status", "poll_generation").get(pk=run_id)
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
        writer.wake(run.pk, ticket=run.poll_generation, webhook_events=1)
    except Exception:
        # The broker is down: un-settle so a redelivery (OpenAI retries non-2xx) tries again.
        WebhookEvent.objects.filter(pk=event.pk).update(outcome=expected, processed_at=None)
        raise
    log.info("run %s: woken by %s (%s)", run.pk, event.type, event.webhook_id)
    return Outcome.APPLIED
