"""The batch list and page: status, request counts, cost, when the next poll is due and why, its
runs (counted by status, linked to the run list) and a cancel action.

Read-only like the run admin: a batch changes only through the engine. The list costs no query
per row (counts come from the batch's ``request_counts``, as the API reported them); the page
adds one ``GROUP BY`` over the batch's runs (the ``batch, status`` index).
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from .. import services
from ..conf import settings
from ..engine.batch_files import schedule
from ..models import Batch, Run
from ..status import Strategy
from .lookups import StorableLookupsMixin
from .owners import OwnerFilter
from .runs import OperateMixin


def next_poll(batch: Batch) -> str:
    """When the batch is looked at next, and why then."""
    if batch.is_terminal:
        return "none: it has ended"
    if not batch.remote_id:
        if batch.submit_claimed_at is not None:
            return f"none yet: being sent (since {batch.submit_claimed_at:%H:%M:%S})"
        return "none yet: waiting to be sent" + (
            f" (next try {batch.next_poll_at:%H:%M:%S})" if batch.next_poll_at else ""
        )
    plan = schedule(batch)
    if batch.strategy == Strategy.WEBHOOK:
        why = f"safety net under batch.* webhooks: first after {plan.base:.0f} s, up to every "
    else:
        why = f"polling: {plan.base:.0f} s x {plan.factor} per poll, up to every "
    why += f"{plan.cap:.0f} s (RUNS_TIME_SCALE {settings.RUNS_TIME_SCALE})"
    if batch.error_retries:
        why = f"retrying after {batch.error_retries} error(s) in a row; {why}"
    if batch.next_poll_at is None:
        return why
    left = (batch.next_poll_at - timezone.now()).total_seconds()
    when = f"in {left:.0f} s" if left > 0 else f"overdue by {-left:.0f} s"
    return f"{batch.next_poll_at:%Y-%m-%d %H:%M:%S} ({when}): {why}"


@admin.register(Batch)
class BatchAdmin(StorableLookupsMixin, OperateMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "status_badge",
        "model",
        "owner",
        "strategy",
        "total",
        "completed",
        "failed",
        "cost",
        "api_calls",
        "created_at",
        "next_poll_at",
    )
    list_display_links = ("id", "status_badge")
    list_filter = ("status", "strategy", OwnerFilter, ("created_at", admin.DateFieldListFilter))
    search_fields = ("=id", "=remote_id")
    search_help_text = "Our id (42) or the batch id at OpenAI (batch_...)."
    show_full_result_count = False
    actions = ("cancel_selected",)
    fieldsets = (
        (None, {"fields": ("status_badge", "owner", "model", "strategy", "metadata")}),
        ("Progress", {"fields": ("request_counts", "run_statuses", "cost")}),
        ("Next poll", {"fields": ("next_poll_due",)}),
        (
            "At OpenAI",
            {"fields": ("remote_id", "input_file_id", "output_file_id", "error_file_id")},
        ),
        ("Errors", {"fields": ("last_error_code", "last_error")}),
        (
            "Times",
            {
                "fields": (
                    "created_at",
                    "submit_claimed_at",
                    "submitted_at",
                    "completed_at",
                    "results_applied_at",
                    "deadline_at",
                )
            },
        ),
        ("Counters", {"fields": ("api_calls", "polls", "webhook_events")}),
        (
            "Polling",
            {
                "classes": ("collapse",),
                "fields": ("poll_attempt", "poll_generation", "next_poll_at", "error_retries"),
            },
        ),
    )

    class Media:
        css = {"all": ("runs/admin.css",)}

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # batches come from services.submit_batch, the API or startbatch

    def has_change_permission(self, request: HttpRequest, obj: Batch | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Batch | None = None) -> bool:
        return False

    @admin.display(description="status", ordering="status")
    def status_badge(self, batch: Batch) -> str:
        return format_html(
            '<span class="run-status run-status-{}">{}</span>',
            batch.status,
            batch.get_status_display(),
        )

    def _count(self, batch: Batch, key: str) -> int | str:
        return (batch.request_counts or {}).get(key, "-")

    @admin.display(description="runs")
    def total(self, batch: Batch) -> int | str:
        return self._count(batch, "total")

    @admin.display(description="completed")
    def completed(self, batch: Batch) -> int | str:
        return self._count(batch, "completed")

    @admin.display(description="failed")
    def failed(self, batch: Batch) -> int | str:
        return self._count(batch, "failed")

    @admin.display(description="next poll and why")
    def next_poll_due(self, batch: Batch) -> str:
        return next_poll(batch)

    @admin.display(description="its runs")
    def run_statuses(self, batch: Batch) -> str:
        counts = (
            Run.objects.filter(batch=batch)
            .values("status")
            .annotate(n=Count("pk"))
            .values_list("status", "n")
        )
        url = reverse("admin:runs_run_changelist") + f"?batch__id__exact={batch.pk}"
        by_status = format_html_join(
            ", ",
            '<a href="{}&status__exact={}">{} {}</a>',
            ((url, status, n, status) for status, n in sorted(counts)),
        )
        return format_html('{} (<a href="{}">all of them</a>)', by_status or "none", url)

    @admin.action(description="Cancel selected batches", permissions=["operate"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Batch]) -> None:
        done, refused = [], []
        for batch in queryset:
            try:
                done.append(f"batch {batch.pk}: {services.cancel_batch(batch)}")
            except ValidationError as exc:
                refused.append(" ".join(exc.messages))
        if done:
            self.message_user(request, "; ".join(done), messages.SUCCESS)
        if refused:
            self.message_user(request, "; ".join(refused), messages.WARNING)
