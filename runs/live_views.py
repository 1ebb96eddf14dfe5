"""The live-status views: the server-sent-events stream and the small page that shows it.

Who may watch, the same rules as the rest of the app:

- a program, with an API bearer token: only its client's runs (another owner's run is a 404,
  as in the JSON API);
- a person, with a session: a staff user with the ``runs.view_run`` permission, like the admin
  the page belongs to (global: any owner's run). Staff without it get a 403.
"""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.core.handlers.asgi import ASGIRequest
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render

from . import live
from .api.auth import bearer_token
from .api.schemas import MAX_ID
from .api.tokens import client_for_token
from .conf import settings
from .models import Run

VIEW_PERMISSION = "runs.view_run"


UNAUTHORIZED = {"detail": "Unauthorized"}


async def _visible_runs(request: HttpRequest) -> QuerySet[Run] | JsonResponse:
    """The runs this request may watch, or the answer (401, 403) when it may watch none."""
    token = bearer_token(request)
    if token is not None:
        client = client_for_token(token)
        if client is None:
            return JsonResponse(UNAUTHORIZED, status=401)
        return Run.objects.filter(owner=client.owner)
    user = await request.auser()
    if not (user.is_active and user.is_staff):
        return JsonResponse(UNAUTHORIZED, status=401)
    if not await user.ahas_perm(VIEW_PERMISSION):
        detail = f"watching runs needs the {VIEW_PERMISSION} permission"
        return JsonResponse({"detail": detail}, status=403)
    return Run.objects.all()


async def run_events(request: HttpRequest, run_id: int) -> HttpResponse:
    """``GET /api/runs/<id>/events``: ``text/event-stream`` of the run's status until it ends."""
    if request.method != "GET":
        return JsonResponse({"detail": "method not allowed"}, status=405, headers={"Allow": "GET"})
    runs = await _visible_runs(request)
    if isinstance(runs, JsonResponse):
        return runs
    if run_id > MAX_ID or not await runs.filter(pk=run_id).aexists():
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
    """``/runs/<id>/live/``: a run's status, updated by the event stream as it changes.
    Staff without ``runs.view_run`` get a 403; anyone else the admin's login page."""
    if not request.user.has_perm(VIEW_PERMISSION):
        raise PermissionDenied(f"watching runs needs the {VIEW_PERMISSION} permission")
    run = get_object_or_404(Run, pk=run_id)
    return render(request, "runs/live.html", {"run": run, "title": f"Run {run.pk}"})
