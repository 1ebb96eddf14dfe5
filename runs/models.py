"""Threads, messages, runs and the transition log.

Models hold fields and ``Meta``; status changes live in ``states.py``, the engine's writes in
``engine/writer.py`` and ``engine/tool_calls.py``, named queries in ``managers.py``.
"""

from __future__ import annotations

from django.db import models

from .managers import MessageQuerySet, RunQuerySet, ThreadQuerySet
from .status import (
    ACTIVE,
    BATCH_TERMINAL,
    TERMINAL,
    Backend,
    BatchStatus,
    CompletionWindow,
    EventSource,
    Mode,
    RunStatus,
    Strategy,
)


class Thread(models.Model):
    """A conversation: an OpenAI conversation (Responses) or thread (Assistants)."""

    backend = models.CharField(max_length=16, choices=Backend.choices, default=Backend.RESPONSES)
    remote_id = models.CharField(
        max_length=128, blank=True, default="", help_text="Conversation id or thread id at OpenAI."
    )
    metadata = models.JSONField(default=dict, blank=True)
    owner = models.CharField(
        max_length=128,
        blank=True,
        default="",
        help_text="client:<name> (an API token's client) or user:<pk>; blank: nobody's.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ThreadQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["remote_id"], name="runs_thread_remote_idx")]

    def __str__(self) -> str:
        return f"thread {self.pk} ({self.remote_id or 'not yet created'})"


class Message(models.Model):
    """A message of a thread. ``sent_at`` stays empty until a run has carried it to OpenAI."""

    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, default="user")
    content = models.TextField()
    remote_id = models.CharField(max_length=128, blank=True, default="")
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:40]}"


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
            models.Index(fields=["status"], name="runs_run_status_idx"),
            models.Index(fields=["remote_id"], name="runs_run_remote_idx"),
            models.Index(fields=["next_poll_at"], name="runs_run_next_poll_idx"),
            models.Index(fields=["created_at"], name="runs_run_created_idx"),
            # The API lists one owner's runs, newest first.
            models.Index(fields=["owner", "-id"], name="runs_run_owner_idx"),
            models.Index(fields=["batch", "status"], name="runs_run_batch_idx"),
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
