"""Webhook deliveries we accepted."""

from __future__ import annotations

from django.db import models

from .batches import Batch
from .runs import Run


class WebhookEvent(models.Model):
    """One webhook delivery we accepted (signature valid). Unique by ``webhook-id``.

    OpenAI delivers at least once; the unique id makes a second delivery a no-op.
    """

    class Outcome(models.TextChoices):
        RECEIVED = "received", "received, not processed yet"
        APPLIED = "applied", "woke its run"
        UNKNOWN_OBJECT = (
            "unknown_object",
            "no run has this remote id yet",
        )
        IGNORED = "ignored", "event type we do not act on"
        STALE = "stale", "run already terminal"

    webhook_id = models.CharField(max_length=128, unique=True)
    event_id = models.CharField(max_length=128, blank=True, default="")
    type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=128, blank=True, default="")
    run = models.ForeignKey(
        Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="webhook_deliveries"
    )
    batch = models.ForeignKey(
        Batch,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="webhook_deliveries",
        help_text="The batch a batch.* event is about.",
    )
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.RECEIVED)
    payload = models.JSONField(default=dict)
    created_at_remote = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["object_id"], name="runs_webhook_object_idx"),
            models.Index(fields=["outcome"], name="runs_webhook_outcome_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.object_id} ({self.outcome})"
