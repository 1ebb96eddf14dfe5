"""Batches: many single-turn runs sent as one Batch API job."""

from __future__ import annotations

from django.db import models

from ..status import BATCH_TERMINAL, BatchStatus, Strategy


class Batch(models.Model):
    """A group of single-turn runs sent as one Batch API job (``services.submit_batch``).

    Tracked like a run: one task re-armed with a growing countdown (``poll_generation`` is its
    ticket), woken by ``batch.*`` webhooks; at its end the output and error files settle every
    run still open, once (``results_applied_at``).
    """

    owner = models.CharField(max_length=128, blank=True, default="")
    status = models.CharField(
        max_length=20, choices=BatchStatus.choices, default=BatchStatus.PENDING
    )
    strategy = models.CharField(max_length=16, choices=Strategy.choices, default=Strategy.POLL)
    model = models.CharField(max_length=64)
    metadata = models.JSONField(default=dict, blank=True)
    remote_id = models.CharField(max_length=128, blank=True, default="", help_text="batch_...")
    input_file_id = models.CharField(max_length=128, blank=True, default="")
    output_file_id = models.CharField(max_length=128, blank=True, default="")
    error_file_id = models.CharField(max_length=128, blank=True, default="")
    request_counts = models.JSONField(null=True, blank=True, help_text="As the API reports them.")
    cost = models.DecimalField(
        max_digits=14, decimal_places=8, null=True, blank=True, help_text="USD; its runs' sum."
    )
    last_error_code = models.CharField(max_length=64, blank=True, default="")
    last_error = models.TextField(blank=True, default="")

    created_at = models.DateTimeField(auto_now_add=True)
    submit_claimed_at = models.DateTimeField(
        null=True, blank=True, help_text="Set once by the task that uploads and creates it."
    )
    submitted_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True, help_text="When we saw it end.")
    results_applied_at = models.DateTimeField(
        null=True, blank=True, help_text="When its output and error files settled its runs."
    )
    deadline_at = models.DateTimeField(null=True, blank=True)

    poll_attempt = models.PositiveIntegerField(default=0)
    poll_generation = models.PositiveIntegerField(default=0)
    next_poll_at = models.DateTimeField(null=True, blank=True)
    error_retries = models.PositiveIntegerField(default=0)
    api_calls = models.PositiveIntegerField(default=0)
    polls = models.PositiveIntegerField(default=0)
    webhook_events = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "batches"
        indexes = [
            models.Index(fields=["status"], name="runs_batch_status_idx"),
            models.Index(fields=["remote_id"], name="runs_batch_remote_idx"),
            models.Index(fields=["owner", "-id"], name="runs_batch_owner_idx"),
        ]

    def __str__(self) -> str:
        return f"batch {self.pk} [{self.status}]"

    @property
    def is_terminal(self) -> bool:
        return self.status in BATCH_TERMINAL
