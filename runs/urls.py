"""URLs of the runs app."""

from django.urls import path

from .webhooks import openai_webhook

urlpatterns = [
    path("webhooks/openai/", openai_webhook, name="openai-webhook"),
]
