"""The live-status views: the server-sent-events stream and the small page that shows it."""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render

from . import live
from .api.auth import bearer_token, token_is_valid
from .api.schemas import MAX_ID
from .conf import settings
from .models import Run


async def _may_watch(request: HttpRequest) -> bool:
    """An API token (programs) or a staff session (the page below, opened from the admin)."""
    token = bearer_token(request)
    if token is not None:
        return token_is_valid(token)
    user = await request.auser()
    return bool(user.is_active and user.is_staff)


async def run_events(request: HttpRequest, run_id: int) -> HttpResponse:
    """``GET /api/runs/<id>/events``: ``text/event-stream`` of the run's status until it ends."""
    if request.method != "GET":
        return JsonResponse({"detail": "method not allowed"}, status=405, headers={"Allow": "GET"})
    if not await _may_watch(request):
        return JsonResponse({"detail": "Unauthorized"}, status=401)
    if run_id > MAX_ID or not await Run.objects.filter(pk=run_id).aexists():
        return JsonResponse({"detail": "Not Found"}, status=404)
    if not settings.RUNS_PUBSUB_URL:
        return JsonResponse({"detail": "live status is off (RUNS_PUBSUB_URL is empty)"}, status=503)
    # ASGI: an async generator, no thread held while the page waits. WSGI: a blocking one.
    content = live.astream(run_id) if isinstance(request, ASGIRequest) else live.stream(run_id)
    response = StreamingHttpResponse(content, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass events through as they come
    return response


@staff_member_required
def run_page(request: HttpRequest, run_id: int) -> HttpResponse:
    """``/runs/<id>/live/``: a run's status, updated by the event stream as it changes."""
    run = get_object_or_404(Run, pk=run_id)
    return render(request, "runs/live.html", {"run": run, "title": f"Run {run.pk}"})
