"""Runs, their transition log and their tool calls."""

from __future__ import annotations

from django.db import models

from ..managers import RunQuerySet
from ..status import (
    ACTIVE,
    TERMINAL,
    Backend,
    CompletionWindow,
    EventSource,
    Mode,
    RunStatus,
    Strategy,
)
from .batches import Batch
from .threads import Thread


class Run(models.Model):
    """One model run at OpenAI, tracked from creation to a terminal status."""

    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="runs")
    backend = models.CharField(max_length=16, choices=Backend.choices, default=Backend.RESPONSES)
    strategy = models.CharField(max_length=16, choices=Strategy.choices, default=Strategy.POLL)
    remote_id = models.CharField(
        max_length=128,
        blank=True,
        default="",
        help_text="Current response id (Responses) or run id (Assistants) at OpenAI.",
    )
    status = models.CharField(max_length=20, choices=RunStatus.choices, default=RunStatus.PENDING)
    model = models.CharField(max_length=64)
    instructions = models.TextField(blank=True, default="")
    tools = models.JSONField(default=list, blank=True, help_text="Names of registered tools.")
    metadata = models.JSONField(default=dict, blank=True)
    owner = models.CharField(
        max_length=128,
        blank=True,
        default="",
        help_text="Its thread's owner: client:<name> or user:<pk>; blank: nobody's.",
    )

    # Run options (runs/options.py validates them; backends/responses.py sends them)
    completion_window = models.CharField(
        max_length=8, choices=CompletionWindow.choices, default=CompletionWindow.SOONEST
    )
    service_tier = models.CharField(
        max_length=16, blank=True, default="", help_text="Blank: not sent (the project default)."
    )
    mode = models.CharField(
        max_length=16,
        choices=Mode.choices,
        default=Mode.STANDARD,
        help_text="How it is processed and billed: from the window, the tier or its batch.",
    )
    response_format = models.JSONField(
        null=True, blank=True, help_text="Structured output: {name, schema, strict}."
    )
    reasoning_effort = models.CharField(max_length=16, blank=True, default="")
    max_output_tokens = models.PositiveIntegerField(null=True, blank=True)
    prompt_cache_key = models.CharField(max_length=64, blank=True, default="")
    safety_identifier = models.CharField(max_length=64, blank=True, default="")
    batch = models.ForeignKey(
        Batch,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="runs",
        # runs_run_batch_idx (batch, status) serves the lookups, built concurrently (0006).
        db_index=False,
    )

    output_text = models.TextField(blank=True, default="")
    parsed_output = models.JSONField(
        null=True, blank=True, help_text="A structured run's output, parsed and validated."
    )
    usage = models.JSONField(null=True, blank=True)
    round_usage = models.JSONField(
        default=dict,
        blank=True,
        help_text="Usage of each earlier tool round's response, by response id (Responses API: "
        "a round is a response of its own); the run's cost covers them and its last one.",
    )
    cost = models.DecimalField(
        max_digits=14,
        decimal_places=8,
        null=True,
        blank=True,
        help_text="USD from usage and the price table; empty for a model it does not list.",
    )
    last_error_code = models.CharField(max_length=64, blank=True, default="")
    last_error = models.TextField(blank=True, default="", help_text="Why the run did not complete.")

    created_at = models.DateTimeField(auto_now_add=True)
    start_claimed_at = models.DateTimeField(
        null=True, blank=True, help_text="Set once by the start_run that may create it remotely."
    )
    submitted_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True, help_text="When we saw it end.")
    remote_completed_at = models.DateTimeField(null=True, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True)

    poll_attempt = models.PositiveIntegerField(default=0)
    poll_generation = models.PositiveIntegerField(
        default=0,
        help_text="Ticket of the one poll allowed to run next; any other poll exits at once.",
    )
    next_poll_at = models.DateTimeField(null=True, blank=True)
    poll_by_due = models.BooleanField(
        default=False,
        help_text="The next poll is found by runs.poll_due at next_poll_at; no countdown task "
        "waits for it.",
    )
    error_retries = models.PositiveIntegerField(
        default=0, help_text="Transient API errors in a row (reset by a good answer)."
    )

    api_calls = models.PositiveIntegerField(default=0)
    polls = models.PositiveIntegerField(default=0)
    webhook_events = models.PositiveIntegerField(default=0)

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [
            # Status, then id: a status change is a compare-and-set on both (``WHERE id = %s AND
            # status = %s``), and with statistics from before a burst (every run "completed",
            # then 10,000 "pending") PostgreSQL judged an index on status alone as good as the
            # primary key and scanned every run of that status for one row (migration 0009).
            models.Index(fields=["status", "id"], name="runs_run_status_id_idx"),
            models.Index(fields=["remote_id"], name="runs_run_remote_idx"),
            models.Index(fields=["next_poll_at"], name="runs_run_next_poll_idx"),
            models.Index(fields=["created_at"], name="runs_run_created_idx"),
            # The API lists one owner's runs, newest first.
            models.Index(fields=["owner", "-id"], name="runs_run_owner_idx"),
            models.Index(fields=["batch", "status"], name="runs_run_batch_idx"),
            # A chunked start takes the oldest runs waiting to start (runs/engine/starts.py);
            # without it each claim would walk past every run started before.
            models.Index(
                fields=["id"],
                condition=models.Q(status="pending", start_claimed_at__isnull=True),
                name="runs_run_startable_idx",
            ),
            # A spend limit sums one owner's runs of the current period (runs/spend.py).
            models.Index(fields=["owner", "created_at"], name="runs_run_owner_created_idx"),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} [{self.status}]"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE


class RunEvent(models.Model):
    """One status change of a run: the audit trail, the admin timeline, the latency source."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=20, choices=RunStatus.choices)
    to_status = models.CharField(max_length=20, choices=RunStatus.choices)
    source = models.CharField(max_length=16, choices=EventSource.choices)
    at = models.DateTimeField(auto_now_add=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["run", "at"], name="runs_event_run_at_idx")]

    def __str__(self) -> str:
        return f"{self.from_status} -> {self.to_status} ({self.source})"


class ToolCall(models.Model):
    """One function call the model asked for, and what we answered."""

    class State(models.TextChoices):
        PENDING = "pending", "pending"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        ERROR = "error", "error (sent back to the model)"
        MANUAL = "manual", "waiting for a manual output"
        SUBMITTED = "submitted", "output submitted"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="tool_calls")
    call_id = models.CharField(max_length=128, help_text="The call id OpenAI gave this call.")
    name = models.CharField(max_length=128)
    arguments = models.TextField(blank=True, default="", help_text="As received: may be bad JSON.")
    output = models.TextField(blank=True, default="")
    error = models.TextField(blank=True, default="")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    round = models.PositiveIntegerField(default=1)
    remote_id = models.CharField(
        max_length=128, blank=True, default="", help_text="The response or run that asked."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    submitted_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Claimed for submission at; a claim older than RUNS_CLAIM_TIMEOUT_S is released.",
    )
    submit_attempts = models.PositiveIntegerField(
        default=0,
        help_text="Submissions sent; more than one means an earlier answer was lost.",
    )

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["state", "submitted_at"], name="runs_toolcall_claim_idx"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["run", "call_id"], name="runs_toolcall_unique_call")
        ]

    def __str__(self) -> str:
        return f"{self.name}({self.call_id}) [{self.state}]"
