"""``POST /webhooks/openai/``: verify, record, wake the run, answer fast.

The flow (django-anymail's shape, dj-stripe's idempotency):

1. Verify the Standard Webhooks signature over the raw body with the SDK's
   ``client.webhooks.verify_signature``, once per configured secret (``OPENAI_WEBHOOK_SECRET``,
   then ``OPENAI_WEBHOOK_SECRET_FALLBACKS`` during a rotation: ``secrets.py``); the SDK also
   rejects a timestamp outside its 5-minute tolerance. Anything that fails is a 400 with a JSON
   error and touches nothing: a forged request never reaches the database.
2. Record the event by its ``webhook-id`` (unique): a second delivery answers 200 and does
   nothing more. On PostgreSQL the same statement takes the run's fresh poll ticket.
3. Wake the run (``runs.engine.events.process``): enqueue its poll, no API call in the request.

Which answers make OpenAI retry is chosen on purpose: 400 for requests that will never verify
(retrying cannot help), 500 only when *we* failed (no secret configured, the database or the
broker down), so the event is delivered again once we are fixed. A configured secret that is
malformed is such a failure of ours (it would refuse every good delivery as forged), so it is a
500 too, and a system check (``runs/checks/security.py``) reports it before the first delivery
does.
"""

from __future__ import annotations

import logging

import openai
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, InterfaceError, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from ..client import get_client
from ..engine import events
from . import recording, secrets

log = logging.getLogger(__name__)


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


@csrf_exempt
@transaction.non_atomic_requests
def openai_webhook(request: HttpRequest) -> JsonResponse:
    if request.method != "POST":
        response = _error(405, f"method {request.method} not allowed; OpenAI sends POST")
        response["Allow"] = "POST"
        return response
    if not secrets.current():
        log.error("webhook received but OPENAI_WEBHOOK_SECRET is not set; answering 500")
        return _error(500, "webhook secret not configured")
    if problems := secrets.problems():
        # Named by setting, never by value: the log must not hold a secret.
        log.error("webhook received but a webhook secret is malformed: %s", "; ".join(problems))
        return _error(500, "webhook secret misconfigured on this server; see its log")
    try:
        body = request.body
    except RequestDataTooBig:
        return _error(
            413, "the body is larger than this server accepts (DATA_UPLOAD_MAX_MEMORY_SIZE)"
        )
    try:
        secrets.verify(get_client(), body, request.headers, secrets.configured())
    except openai.InvalidWebhookSignatureError as exc:
        return _error(400, f"invalid signature: {exc}")
    except ValueError as exc:  # a missing webhook-* header, a body that is not UTF-8
        return _error(400, str(exc) or "malformed webhook request")
    try:
        payload = recording.load(body)
        event, created, ticket = recording.record(request.headers["webhook-id"], payload)
    except recording.MalformedEvent as exc:
        return _error(400, str(exc))
    except (DatabaseError, InterfaceError):
        # Our failure (the database down or restarting, a connection it closed): a 500, so
        # OpenAI delivers it again.
        log.exception("webhook %s: could not record the event", request.headers["webhook-id"][:128])
        return _error(500, "could not record the event now; it will be recorded on redelivery")
    # A copy of an event stored before its run's remote id was saved looks again (one indexed
    # query): the start's own look may have come before the first copy's insert committed.
    again = not created and event.outcome == event.Outcome.UNKNOWN_OBJECT
    if not created and event.outcome != event.Outcome.RECEIVED and not again:
        return JsonResponse({"status": "duplicate", "outcome": event.outcome})
    try:
        outcome = events.process(event, ticket=ticket)
    except Exception:
        log.exception("webhook %s: could not wake run for %s", event.webhook_id, event.object_id)
        return _error(500, "could not process the event now; it will be processed on redelivery")
    return JsonResponse({"status": "duplicate" if again else "ok", "outcome": outcome})
