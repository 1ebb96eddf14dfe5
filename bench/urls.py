"""The project's URLs plus ``/bench/bare/``: the cheapest view Django can serve, as a yardstick.

The webhook view's events/s mean little alone (the machine is shared and noisy); as a ratio to
this view, measured the same way in the same run, they say what verifying, recording and waking
cost on top of Django's own request handling.

``BENCH_INTAKE_STORE=insert_then_wake`` makes this web process store deliveries the SQLite way
(the insert, then the wake's UPDATE) on any database, for ``bench.intake_store``'s side by side.
"""

import os

from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def bare(request: HttpRequest) -> JsonResponse:
    """Read the body (as the webhook view does) and answer: no signature, no database."""
    return JsonResponse({"status": "ok", "bytes": len(request.body)})


urlpatterns = [
    path("bench/bare/", bare, name="bench-bare"),
    # The same view, which bench/asgi.py serves on the intake's path (Django's WSGI handler).
    path("bench/bare-wsgi/", bare, name="bench-bare-wsgi"),
    path("", include("project.urls")),
]

if os.environ.get("BENCH_INTAKE_STORE") == "insert_then_wake":
    from runs.engine import event_rows

    event_rows.wakes_in_insert = lambda about: False
