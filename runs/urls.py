"""URLs of the runs app."""

from django.urls import path

from .api import urls as api_urls
from .intake.views import openai_webhook
from .live_views import run_events, run_page
from .metrics import metrics_view

urlpatterns = [
    path("webhooks/openai/", openai_webhook, name="openai-webhook"),
    # Before the API's own URLs: the event stream is a plain (async) Django view.
    path("api/runs/<int:run_id>/events", run_events, name="run-events"),
    path("api/", api_urls),
    path("runs/<int:run_id>/live/", run_page, name="run-live"),
    path("metrics", metrics_view, name="prometheus-metrics"),
]
