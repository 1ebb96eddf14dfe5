"""The live-status views: the server-sent-events stream and the small page that shows it.

Who may watch, the same rules as the rest of the app:

- a program, with an API bearer token: only its client's runs (another owner's run is a 404,
  as in the JSON API);
- a person, with a session: a staff user with the ``runs.view_run`` permission, like the admin
  the page belongs to (global: any owner's run). Staff without it get a 403.

How often and how many: each stream opened counts as one request of the watcher's ``read``
throttle bucket (an API client's, shared with its GETs; a staff user gets one of their own), and
a watcher holds at most ``RUNS_SSE_MAX_PER_CLIENT`` streams open at once (``live_slots``). Both
answer 429 with ``Retry-After`` and open nothing.
"""

from __future__ import annotations

import logging

from asgiref.sync import sync_to_async
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.core.handlers.asgi import ASGIRequest
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from redis.exceptions import RedisError

from . import live, live_slots
from .api.auth import bearer_token
from .api.schemas import MAX_ID
from .api.throttles import READ
from .api.tokens import client_for_token
from .conf import settings
from .models import Run

log = logging.getLogger(__name__)

VIEW_PERMISSION = "runs.view_run"


UNAUTHORIZED = {"detail": "Unauthorized"}
#: When a watcher is at its cap: streams usually end with their run, so soon is worth a try.
FULL_RETRY_AFTER_S = 10


async def _watcher(request: HttpRequest) -> tuple[str, QuerySet[Run]] | JsonResponse:
    """Who watches (the throttle and cap key) and the runs they may watch, or the answer (401,
    403) when they may watch none."""
    token = bearer_token(request)
    if token is not None:
        client = client_for_token(token)
        if client is None:
            return JsonResponse(UNAUTHORIZED, status=401)
        return str(client), Run.objects.filter(owner=client.owner)
    user = await request.auser()
    if not (user.is_active and user.is_staff):
        return JsonResponse(UNAUTHORIZED, status=401)
    if not await user.ahas_perm(VIEW_PERMISSION):
        detail = f"watching runs needs the {VIEW_PERMISSION} permission"
        return JsonResponse({"detail": detail}, status=403)
    return f"user:{user.pk}", Run.objects.all()


def _too_many(detail: str, retry_after: int) -> JsonResponse:
    return JsonResponse({"detail": detail}, status=429, headers={"Retry-After": str(retry_after)})


async def run_events(request: HttpRequest, run_id: int) -> HttpResponse:
    """``GET /api/runs/<id>/events``: ``text/event-stream`` of the run's status until it ends."""
    if request.method != "GET":
        return JsonResponse({"detail": "method not allowed"}, status=405, headers={"Allow": "GET"})
    watcher = await _watcher(request)
    if isinstance(watcher, JsonResponse):
        return watcher
    ident, runs = watcher
    # Thread, not event loop: the throttle's cache may be a Redis across the network.
    wait = await sync_to_async(READ.retry_after, thread_sensitive=False)(ident)
    if wait is not None:
        return _too_many("Request was throttled.", wait)
    if run_id > MAX_ID or not await runs.filter(pk=run_id).aexists():
        return JsonResponse({"detail": "Not Found"}, status=404)
    url = live.pubsub_url()
    if not url:
        return JsonResponse({"detail": "live status is off (RUNS_PUBSUB_URL is empty)"}, status=503)
    slot = None
    if cap := settings.RUNS_SSE_MAX_PER_CLIENT:
        try:
            # Held briefly until the stream starts and extends it (``live_slots.START_HOLD_S``).
            hold = live_slots.START_HOLD_S
            slot = await live_slots.acquire(url, ident, cap=cap, hold_s=hold)
        except (RedisError, OSError) as exc:
            log.warning("live status: cannot count a stream, its Redis does not answer (%s)", exc)
            return JsonResponse({"detail": "live status: its Redis does not answer"}, status=503)
        if slot is None:
            detail = f"{cap} live-status streams are open already (RUNS_SSE_MAX_PER_CLIENT)"
            return _too_many(detail, FULL_RETRY_AFTER_S)
    # ASGI: an async generator, no thread held while the page waits. WSGI: a blocking one.
    if isinstance(request, ASGIRequest):
        content = live.astream(run_id, url, slot)
    else:
        content = live.stream(run_id, url, slot)
    response = StreamingHttpResponse(content, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass events through as they come
    return response


@staff_member_required
def run_page(request: HttpRequest, run_id: int) -> HttpResponse:
    """``/runs/<id>/live/``: a run's status, updated by the event stream as it changes.
    Staff without ``runs.view_run`` get a 403; anyone else the admin's login page."""
    if not request.user.has_perm(VIEW_PERMISSION):
        raise PermissionDenied(f"watching runs needs the {VIEW_PERMISSION} permission")
    run = get_object_or_404(Run, pk=run_id)
    return render(request, "runs/live.html", {"run": run, "title": f"Run {run.pk}"})
